package state

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrLocked is returned (wrapped in a *LockedError) when a data dir's lock
// is held: a worker is running on it. Open and Reset return it. Test for it
// with errors.Is.
var ErrLocked = errors.New("state: another worker is running on this data dir")

// LockedError says which data dir is locked and, when the platform can
// tell, which process holds its lock.
type LockedError struct {
	Dir    string
	PID    int    // the holder's process id; 0 when unknown
	Holder string // the holder's command line; "" when unknown
}

func (e *LockedError) Error() string {
	who := "another process"
	if e.PID != 0 {
		who = fmt.Sprintf("process %d", e.PID)
		if e.Holder != "" {
			who += fmt.Sprintf(" (%s)", e.Holder)
		}
	}
	return fmt.Sprintf("another worker is running on this data dir: %s holds the lock of %s; "+
		"stop it first, or give each worker its own --data-dir", who, e.Dir)
}

// Unwrap makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Unwrap() error { return ErrLocked }

// lockDir takes the Pebble lock of dir (its LOCK file). When another holder
// has it, the error is a *LockedError naming the holder.
//
// Pebble's lock is a POSIX record lock (fcntl F_SETLK): another process
// holding it makes the call fail with EAGAIN (or EACCES), a bare errno that
// says nothing about a lock; another Store of this process holding it is
// refused by Pebble itself ("lock held by current process").
func lockDir(dir string, fsys vfs.FS) (*pebble.Lock, error) {
	l, err := pebble.LockDirectory(dir, fsys)
	if err == nil {
		return l, nil
	}
	var pathErr *fs.PathError
	switch {
	case errors.As(err, &pathErr):
		// Creating or opening the LOCK file failed: not a lock conflict.
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("state: lock %s: %w (check the data dir's owner and mode)", dir, err)
		}
		return nil, fmt.Errorf("state: lock %s: %w", dir, err)
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EACCES):
		pid, cmd := lockHolder(fsys.PathJoin(dir, "LOCK"))
		return nil, &LockedError{Dir: dir, PID: pid, Holder: cmd}
	case strings.Contains(err.Error(), "lock held by current process"):
		return nil, &LockedError{Dir: dir, PID: syscall.Getpid(), Holder: "this process"}
	}
	return nil, fmt.Errorf("state: lock %s: %w", dir, err)
}
