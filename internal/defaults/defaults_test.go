package defaults_test

import (
	"testing"
	"time"

	"github.com/parley-im/parley/internal/defaults"
)

func TestPositive(t *testing.T) {
	for _, c := range []struct {
		name    string
		in, out time.Duration
	}{
		{"Unset", 0, time.Minute},
		{"Negative", -time.Second, time.Minute},
		{"Set", time.Second, time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := c.in
			defaults.Positive(&v, time.Minute)
			if v != c.out {
				t.Errorf("Positive(%v) = %v, want %v", c.in, v, c.out)
			}
		})
	}
}
