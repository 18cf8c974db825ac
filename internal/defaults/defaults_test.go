package defaults_test

import (
	"testing"
	"time"

	"github.com/parley-im/parley/internal/defaults"
	"github.com/parley-im/parley/internal/testkit"
)

func TestPositive(t *testing.T) {
	positive := func(v time.Duration) time.Duration {
		defaults.Positive(&v, time.Minute)
		return v
	}
	testkit.RunCases(t, "Positive", []testkit.Case[time.Duration, time.Duration]{
		{Name: "Unset", In: 0, Want: time.Minute},
		{Name: "Negative", In: -time.Second, Want: time.Minute},
		{Name: "Set", In: time.Second, Want: time.Second},
	}, positive)
}
