package e2e

import (
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/frontdeskhq/frontdesk/e2e/cluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Cleanup()
	os.Exit(code)
}

// httpBody GETs url and returns the body of its 200 answer; anything else
// fails tb.
func httpBody(tb testing.TB, url string) []byte {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return body
}
