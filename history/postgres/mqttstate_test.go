package postgres_test

import (
	"testing"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/historytest"
)

func TestMQTTState(t *testing.T) {
	historytest.RunMQTTState(t, func(t *testing.T) history.MQTTStater { return open(t) })
}
