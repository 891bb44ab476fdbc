//go:build unix && !linux

package proctest

import "syscall"

// sysProcAttr: Pdeathsig is Linux-only; elsewhere the cleanups kill the
// children. With ownGroup the child leads a process group of its own.
func sysProcAttr(ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: ownGroup}
}
