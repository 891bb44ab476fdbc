package proctest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// PythonVenv returns the python of a virtual environment holding the
// packages of requirements (a pip requirements file), making it on first
// use: python3 -m venv, then pip install -r, from PyPI. The environment
// lives in the user's cache dir, named by the file's content, so that
// tests and benchmarks that pin the same packages share it, and a change
// of pins makes a new one; a file lock keeps processes from making it
// together. Nothing of it belongs in the repository.
func PythonVenv(ctx context.Context, requirements string) (string, error) {
	b, err := os.ReadFile(requirements)
	if err != nil {
		return "", err
	}
	python3, err := exec.LookPath("python3")
	if err != nil {
		return "", errors.New("python3 is not on PATH")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sum := sha256.Sum256(b)
	dir := filepath.Join(cache, "mephisto", "venv-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	py := filepath.Join(dir, "bin", "python")
	done := filepath.Join(dir, ".installed")
	if _, err := os.Stat(done); err == nil {
		return py, nil
	}
	_ = os.RemoveAll(dir) // a half-made one
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, python3, "-m", "venv", dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("python3 -m venv %s: %w: %s", dir, err, tailString(out, 2<<10))
	}
	pip := exec.CommandContext(ctx, filepath.Join(dir, "bin", "pip"), "install", "-q", "--disable-pip-version-check", "-r", requirements)
	if out, err := pip.CombinedOutput(); err != nil {
		return "", fmt.Errorf("pip install -r %s (is PyPI reachable?): %w: %s", requirements, err, tailString(out, 2<<10))
	}
	if err := os.WriteFile(done, b, 0o644); err != nil {
		return "", err
	}
	return py, nil
}
