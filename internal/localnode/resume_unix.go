//go:build unix

package localnode

import (
	"os"
	"syscall"
)

// resume continues a process stopped by SIGSTOP.
func resume(p *os.Process) { _ = p.Signal(syscall.SIGCONT) }
