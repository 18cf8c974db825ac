package send_test

import (
	"os"
	"testing"

	"github.com/parley-im/parley/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
