package proctest

import "syscall"

// sysProcAttr makes the kernel SIGKILL the child if this process dies (a
// panic, a test timeout), so that no broker or worker outlives it; with
// ownGroup the child also leads a process group of its own.
func sysProcAttr(ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: ownGroup}
}
