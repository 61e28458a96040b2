package main

import "syscall"

// childAttr makes a started frontdeskd die with fdbench, even if fdbench
// is killed before it can clean up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
