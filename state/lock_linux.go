package state

import (
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockHolder asks the kernel which process holds the record lock on the
// file at path (F_GETLK), and reads its command line from /proc. It
// returns 0 and "" when it cannot tell.
//
// It must only be called when another process holds the lock: closing any
// descriptor of a file drops the record locks this process holds on it.
func lockHolder(path string) (pid int, cmd string) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil || lk.Type == syscall.F_UNLCK {
		return 0, ""
	}
	pid = int(lk.Pid)
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return pid, ""
	}
	cmd = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if len(cmd) > 200 {
		cmd = cmd[:200] + "…"
	}
	return pid, cmd
}
