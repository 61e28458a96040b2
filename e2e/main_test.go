package e2e

import (
	"os"
	"testing"

	"github.com/frontdeskhq/frontdesk/e2e/cluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Cleanup()
	os.Exit(code)
}
