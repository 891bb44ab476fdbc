package deploy

// The image's binary: built here with the Dockerfile's own `go build`
// line (its environment, flags and build args as docker would run it),
// once per test binary, and its worker flags read from `worker --help`.

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/internal/proctest"
)

// binDir holds the binaries the tests build; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mephisto-deploy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goBuild is the Dockerfile's `go build` command, resolved.
type goBuild struct {
	line   int      // in the Dockerfile
	env    []string // the assignments before `go`
	args   []string // after `go`
	out    string   // the -o path in the image's build stage
	stage  string   // the build stage's name
	source string   // the shell segment as written
}

// composeBuildArgs returns the build args the compose file's nodes pass
// (the image compose builds), checked to be the same for every node.
func composeBuildArgs(t testing.TB) map[string]string {
	t.Helper()
	var args map[string]string
	var from string
	for name, s := range loadCompose(t).Services {
		if s.Build == nil {
			continue
		}
		if args != nil && !mapsEqual(args, s.Build.Args) {
			t.Fatalf("docker-compose.yml: services %s and %s build the image with different args: %v, %v", from, name, args, s.Build.Args)
		}
		args, from = s.Build.Args, name
	}
	if args == nil {
		args = map[string]string{}
	}
	return args
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// dockerGoBuild finds the Dockerfile's `go build` and resolves it with
// the ARG defaults, the compose file's build args, and this machine's
// OS and architecture as the target platform.
func dockerGoBuild(t testing.TB, d *dockerfile, buildArgs map[string]string) goBuild {
	t.Helper()
	var found []goBuild
	for _, st := range d.stages {
		vars := map[string]string{"TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH,
			"TARGETPLATFORM": runtime.GOOS + "/" + runtime.GOARCH, "BUILDPLATFORM": runtime.GOOS + "/" + runtime.GOARCH}
		for k, v := range st.argDefaults() {
			if _, auto := vars[k]; auto && v == "" {
				continue
			}
			if g, ok := d.args[k]; ok && v == "" {
				v = g // ARG NAME in a stage takes the global default
			}
			if b, ok := buildArgs[k]; ok {
				v = b
			}
			vars[k] = v
		}
		for _, run := range st.find("RUN") {
			shell := regexp.MustCompile(`^(--\S+\s+)*`).ReplaceAllString(run.args, "")
			for _, seg := range regexp.MustCompile(`&&|;|\|\|`).Split(shell, -1) {
				if !strings.Contains(seg, "go build") {
					continue
				}
				words, err := shellWords(seg, vars)
				if err != nil {
					t.Fatalf("Dockerfile:%d: %v", run.line, err)
				}
				g := goBuild{line: run.line, stage: st.name, source: strings.TrimSpace(seg)}
				for len(words) > 0 && assignment.MatchString(words[0]) {
					g.env, words = append(g.env, words[0]), words[1:]
				}
				if len(words) < 2 || words[0] != "go" || words[1] != "build" {
					t.Fatalf("Dockerfile:%d: %q: want [VAR=value ...] go build ...", run.line, g.source)
				}
				g.args = words[1:]
				for i, a := range g.args {
					if a == "-o" && i+1 < len(g.args) {
						g.out = g.args[i+1]
					} else if o, ok := strings.CutPrefix(a, "-o="); ok {
						g.out = o
					}
				}
				found = append(found, g)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("Dockerfile: %d `go build` commands, want one", len(found))
	}
	g := found[0]
	if !slices.Contains(g.env, "CGO_ENABLED=0") {
		t.Fatalf("Dockerfile:%d: %q does not set CGO_ENABLED=0: the binary would link libc, which the final image has not", g.line, g.source)
	}
	if g.out == "" {
		t.Fatalf("Dockerfile:%d: %q: no -o", g.line, g.source)
	}
	return g
}

var imageBuild struct {
	once    sync.Once
	bin     string
	took    time.Duration
	command string
	err     error
}

// imageBinary runs the Dockerfile's `go build` here, writing the binary
// into binDir instead of its path in the image, and returns its path.
func imageBinary(t testing.TB) string {
	t.Helper()
	d := loadDockerfile(t)
	g := dockerGoBuild(t, d, composeBuildArgs(t))
	imageBuild.once.Do(func() {
		bin := filepath.Join(binDir, filepath.Base(g.out))
		args := slices.Clone(g.args)
		for i := range args {
			if args[i] == "-o" {
				args[i+1] = bin
			} else if strings.HasPrefix(args[i], "-o=") {
				args[i] = "-o=" + bin
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		cmd.Env = append(proctest.Environ(nil, "MEPHISTO_"), g.env...)
		imageBuild.command = strings.Join(append(slices.Clone(g.env), "go "+strings.Join(args, " ")), " ")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		imageBuild.took = time.Since(start)
		if err != nil {
			imageBuild.err = fmt.Errorf("Dockerfile:%d: %s: %v\n%s", g.line, imageBuild.command, err, out)
			return
		}
		imageBuild.bin = bin
	})
	if imageBuild.err != nil {
		t.Fatal(imageBuild.err)
	}
	return imageBuild.bin
}

// TestDockerfileBuildsStatic runs the Dockerfile's build line here and
// requires a static executable: no program interpreter, no shared
// libraries (the final image has no libc).
func TestDockerfileBuildsStatic(t *testing.T) {
	bin := imageBinary(t)
	t.Logf("%s: built in %v", imageBuild.command, imageBuild.took.Round(time.Millisecond))
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		t.Errorf("%s: ELF type %v, want an executable", bin, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has a %v program header: dynamically linked", bin, p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s: imports shared libraries %v (%v)", bin, libs, err)
	}
	// It runs with nothing of this machine's: an empty environment.
	cmd := exec.Command(bin, "agents")
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s agents: %v\n%s", bin, err, out)
	}
	if !strings.Contains(string(out), "AGENT") {
		t.Errorf("%s agents printed %q, want the agents table", bin, out)
	}
}

// flagInfo is one flag of the worker command.
type flagInfo struct {
	name  string
	typ   string // pflag's type name; "" for a bool
	usage string
}

// envName is the environment variable that sets flag name (cli.go's
// bindEnv: MEPHISTO_, upper case, dashes as underscores).
func envName(flag string) string {
	return "MEPHISTO_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

var (
	workerFlagsOnce sync.Once
	workerFlagsSet  map[string]flagInfo
	workerFlagsErr  error
	flagLine        = regexp.MustCompile(`^\s+(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)(?: ([a-zA-Z0-9]+))?\s{2,}(.*)$`)
)

// workerFlags returns the worker command's flags as the image's binary
// prints them in `worker --help`.
func workerFlags(t testing.TB) map[string]flagInfo {
	t.Helper()
	bin := imageBinary(t)
	workerFlagsOnce.Do(func() {
		cmd := exec.Command(bin, "worker", "--help")
		cmd.Env = proctest.Environ(nil, "MEPHISTO_")
		out, err := cmd.Output()
		if err != nil {
			workerFlagsErr = fmt.Errorf("%s worker --help: %v\n%s", bin, err, out)
			return
		}
		flags := map[string]flagInfo{}
		inFlags := false
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasSuffix(line, "Flags:"):
				inFlags = true
				continue
			case strings.TrimSpace(line) == "":
				inFlags = false
				continue
			}
			if !inFlags {
				continue
			}
			if m := flagLine.FindStringSubmatch(line); m != nil {
				flags[m[1]] = flagInfo{name: m[1], typ: m[2], usage: m[3]}
			}
		}
		if _, ok := flags["brokers"]; !ok || len(flags) < 10 {
			workerFlagsErr = fmt.Errorf("%s worker --help: found flags %v, not the worker's:\n%s", bin, flags, out)
			return
		}
		workerFlagsSet = flags
	})
	if workerFlagsErr != nil {
		t.Fatal(workerFlagsErr)
	}
	return workerFlagsSet
}
