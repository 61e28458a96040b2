package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Docker plumbing shared by the compose tests (e2e TestDockerCompose) and
// ComposeDriver: finding Compose, running it under a project of the test's
// own, building the image, and removing what a test process that died
// (a test timeout, ^C) left behind.
//
// Every project and image a test makes is named after the test process,
// "fde2e-<pid>-<random>" and "frontdesk-e2e:<pid>-<random>", so that a
// later test can tell what belongs to a process that is gone.

// FindCompose returns the Compose command line — the docker compose plugin
// or the standalone docker-compose — or why there is none.
func FindCompose() ([]string, error) {
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("docker is not usable: %v: %s", err, bytes.TrimSpace(out))
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}, nil
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}, nil
	}
	return nil, errors.New("neither the docker compose plugin nor docker-compose is installed")
}

// RequireCompose returns the Compose command line, or skips t when Docker
// or Compose is missing — except under CI=true, where that fails t.
func RequireCompose(t testing.TB) []string {
	t.Helper()
	argv, err := FindCompose()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and Docker cannot run the compose test: %v", err)
		}
		t.Skipf("skipping: Docker Compose is not available: %v", err)
	}
	return argv
}

// Compose runs compose subcommands on Files under one project name.
type Compose struct {
	Argv    []string // FindCompose's answer
	Files   []string // -f, in order (later files override earlier ones)
	Project string   // -p
	Env     []string // added to this process's environment (interpolation)
}

// Try runs a compose subcommand and returns its combined output.
func (c *Compose) Try(ctx context.Context, args ...string) (string, error) {
	full := append([]string{}, c.Argv[1:]...)
	for _, f := range c.Files {
		full = append(full, "-f", f)
	}
	full = append(full, "-p", c.Project)
	cmd := exec.CommandContext(ctx, c.Argv[0], append(full, args...)...)
	cmd.Env = append(os.Environ(), c.Env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Run runs a compose subcommand and fails t if it fails.
func (c *Compose) Run(t testing.TB, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := c.Try(ctx, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", strings.Join(c.Argv, " "), strings.Join(args, " "), err, out)
	}
	return out
}

// Down removes the project's containers, networks and volumes (the grow
// profile's too), and then whatever still carries its label.
func (c *Compose) Down(ctx context.Context) error {
	out, err := c.Try(ctx, "--profile", "grow", "down", "-v", "--remove-orphans", "-t", "0")
	if err != nil {
		err = fmt.Errorf("compose down: %v\n%s", err, out)
	}
	return errors.Join(err, removeProject(ctx, c.Project))
}

// docker runs the docker CLI and returns its trimmed combined output.
func docker(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, s)
	}
	return s, nil
}

// Names returns a fresh compose project name and image tag for this test
// process, after removing the projects and images of test processes that
// are gone.
func Names(ctx context.Context) (project, image string) {
	SweepDead(ctx)
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
	return "fde2e-" + suffix, "frontdesk-e2e:" + suffix
}

// ownerOf returns the pid in a name made by Names, or 0.
func ownerOf(name, prefix string) int {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0
	}
	pid, _, _ := strings.Cut(rest, "-")
	n, err := strconv.Atoi(pid)
	if err != nil {
		return 0
	}
	return n
}

// alive reports whether a process with this pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// SweepDead removes the compose projects (containers, volumes, networks)
// and images that test processes no longer running left behind, by their
// names (see Names). Errors are ignored: it is housekeeping.
func SweepDead(ctx context.Context) {
	dead := map[string]bool{}
	for _, args := range [][]string{
		{"ps", "-a", "--format", `{{.Label "com.docker.compose.project"}}`},
		{"volume", "ls", "--format", `{{.Label "com.docker.compose.project"}}`},
		{"network", "ls", "--format", `{{.Label "com.docker.compose.project"}}`},
	} {
		out, _ := docker(ctx, args...)
		for _, p := range strings.Fields(out) {
			if pid := ownerOf(p, "fde2e-"); pid > 0 && pid != os.Getpid() && !alive(pid) {
				dead[p] = true
			}
		}
	}
	for p := range dead {
		_ = removeProject(ctx, p)
	}
	out, _ := docker(ctx, "images", "--format", "{{.Repository}}:{{.Tag}}", "frontdesk-e2e")
	for _, img := range strings.Fields(out) {
		if pid := ownerOf(img, "frontdesk-e2e:"); pid > 0 && pid != os.Getpid() && !alive(pid) {
			_, _ = docker(ctx, "rmi", "-f", img)
		}
	}
}

// removeProject removes every container, volume and network labelled with
// a compose project (what compose down would, without the compose files).
func removeProject(ctx context.Context, project string) error {
	filter := "label=com.docker.compose.project=" + project
	var errs []error
	for _, kind := range []struct{ ls, rm []string }{
		{[]string{"ps", "-aq", "--filter", filter}, []string{"rm", "-f", "-v"}},
		{[]string{"volume", "ls", "-q", "--filter", filter}, []string{"volume", "rm", "-f"}},
		{[]string{"network", "ls", "-q", "--filter", filter}, []string{"network", "rm"}},
	} {
		out, err := docker(ctx, kind.ls...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ids := strings.Fields(out); len(ids) > 0 {
			if _, err := docker(ctx, append(kind.rm, ids...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// BuildImage builds the repository's Dockerfile as tag from a temporary
// context holding static (CGO_ENABLED=0) builds of frontdeskd and fdctl —
// the image is FROM scratch, nothing is pulled, the working tree stays
// untouched — and removes the image when the test ends.
func BuildImage(t testing.TB, ctx context.Context, tag string) {
	t.Helper()
	dir := t.TempDir()
	for _, cmd := range []string{"frontdeskd", "fdctl"} {
		build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "dist", cmd), "github.com/frontdeskhq/frontdesk/cmd/"+cmd)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	df, err := os.ReadFile(filepath.Join(RepoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := docker(ctx, "build", "-q", "-t", tag, dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := docker(ctx, "rmi", "-f", tag); err != nil {
			t.Errorf("removing the image: %v", err)
		}
	})
}

// RepoRoot is the repository's root directory (where docker-compose.yml is).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the repository")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// FreePort returns a TCP port on 127.0.0.1 that is free now and that no
// other caller in this process has been given.
func FreePort(t testing.TB) int { return freePort(t) }
