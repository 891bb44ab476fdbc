package deploy

// Loading the deployment files: the compose file, the Dockerfile, the
// Prometheus and Grafana configuration, each into the part of its format
// the checks read. YAML is decoded strictly (unknown keys are errors), so
// a misspelt key fails here instead of being ignored by the tools.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// root is the repository root, relative to this package's directory (the
// tests' working directory).
const root = ".."

// repoPath returns the path of rel (slash-separated, relative to the
// repository root).
func repoPath(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }

func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeYAML decodes b into v, refusing keys v has no field for.
func decodeYAML(t testing.TB, name string, b []byte, v any) {
	t.Helper()
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// The compose file, as far as the checks read it.
type composeFile struct {
	Name     string              `yaml:"name"`
	Services map[string]*service `yaml:"services"`
	Networks map[string]*network `yaml:"networks"`
	Volumes  map[string]any      `yaml:"volumes"`
	// Extension fields (x-…), holding the anchors the services merge.
	Extensions map[string]any `yaml:",inline"`
}

type service struct {
	Image           string            `yaml:"image"`
	Build           *build            `yaml:"build"`
	Hostname        string            `yaml:"hostname"`
	Command         []string          `yaml:"command"`
	Entrypoint      []string          `yaml:"entrypoint"`
	Environment     map[string]string `yaml:"environment"`
	Ports           []string          `yaml:"ports"`
	Expose          []string          `yaml:"expose"`
	Volumes         []string          `yaml:"volumes"`
	Networks        serviceNetworks   `yaml:"networks"`
	DependsOn       dependsOn         `yaml:"depends_on"`
	Healthcheck     *healthcheck      `yaml:"healthcheck"`
	Restart         string            `yaml:"restart"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	MemLimit        string            `yaml:"mem_limit"`
}

type build struct {
	Context    string            `yaml:"context"`
	Dockerfile string            `yaml:"dockerfile"`
	Args       map[string]string `yaml:"args"`
}

type healthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	StartPeriod string   `yaml:"start_period"`
	Retries     int      `yaml:"retries"`
}

type network struct {
	IPAM struct {
		Config []struct {
			Subnet  string `yaml:"subnet"`
			IPRange string `yaml:"ip_range"`
			Gateway string `yaml:"gateway"`
		} `yaml:"config"`
	} `yaml:"ipam"`
}

// serviceNetworks maps each network a service is on to its fixed IPv4
// address ("" if none); compose writes it as a list of names or a map.
type serviceNetworks map[string]string

func (n *serviceNetworks) UnmarshalYAML(v *yaml.Node) error {
	*n = serviceNetworks{}
	if v.Kind == yaml.SequenceNode {
		var names []string
		if err := v.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			(*n)[name] = ""
		}
		return nil
	}
	var m map[string]*struct {
		IPv4 string `yaml:"ipv4_address"`
	}
	if err := v.Decode(&m); err != nil {
		return err
	}
	for name, c := range m {
		if c != nil {
			(*n)[name] = c.IPv4
		} else {
			(*n)[name] = ""
		}
	}
	return nil
}

// dependsOn maps each service a service depends on to the condition it
// waits for; compose writes it as a list of names or a map.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(v *yaml.Node) error {
	*d = dependsOn{}
	if v.Kind == yaml.SequenceNode {
		var names []string
		if err := v.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			(*d)[name] = "service_started"
		}
		return nil
	}
	var m map[string]struct {
		Condition string `yaml:"condition"`
	}
	if err := v.Decode(&m); err != nil {
		return err
	}
	for name, c := range m {
		(*d)[name] = c.Condition
	}
	return nil
}

// loadCompose reads docker-compose.yml, with compose's interpolation of
// ${VAR:-default} applied to environment values, commands and images as
// it would be with none of the variables set.
func loadCompose(t testing.TB) *composeFile {
	t.Helper()
	var c composeFile
	decodeYAML(t, "docker-compose.yml", readRepoFile(t, "docker-compose.yml"), &c)
	for key := range c.Extensions {
		if !strings.HasPrefix(key, "x-") {
			t.Fatalf("docker-compose.yml: unknown top-level key %q", key)
		}
	}
	for _, s := range c.Services {
		s.Image = interpolate(s.Image)
		for i, a := range s.Command {
			s.Command[i] = interpolate(a)
		}
		for k, v := range s.Environment {
			s.Environment[k] = interpolate(v)
		}
	}
	return &c
}

var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$\$`)

// interpolate resolves compose's ${VAR}, ${VAR:-default}, ${VAR-default}
// and $$ as compose would with none of the variables set (a required
// ${VAR:?message} becomes "").
func interpolate(s string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := interpolation.FindStringSubmatch(m)
		if strings.HasSuffix(sub[2], "-") {
			return sub[3]
		}
		return ""
	})
}

// mounts returns a service's volumes as target → source.
func (s *service) mounts() map[string]string {
	m := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			m[parts[1]] = parts[0]
		}
	}
	return m
}

// containerPorts returns the container ports a service publishes or
// exposes (TCP unless marked).
func (s *service) containerPorts() map[string]bool {
	ports := map[string]bool{}
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		ports[strings.TrimSuffix(parts[len(parts)-1], "/tcp")] = true
	}
	for _, p := range s.Expose {
		ports[strings.TrimSuffix(p, "/tcp")] = true
	}
	return ports
}

// A Dockerfile, as far as the checks read it.
type dockerfile struct {
	args   map[string]string // ARGs before the first FROM, with their defaults
	stages []*stage
}

type stage struct {
	image, name string
	instrs      []instr
}

type instr struct {
	cmd  string // upper case: RUN, COPY, …
	args string // the rest, continuation lines joined
	line int
}

// find returns the stage's instructions of kind cmd.
func (s *stage) find(cmd string) []instr {
	var out []instr
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// argDefaults returns the stage's ARG defaults (an ARG without one is "").
func (s *stage) argDefaults() map[string]string {
	m := map[string]string{}
	for _, in := range s.find("ARG") {
		for _, a := range strings.Fields(in.args) {
			name, def, _ := strings.Cut(a, "=")
			m[name] = def
		}
	}
	return m
}

// env returns the stage's ENV settings (the KEY=VALUE form).
func (s *stage) env(t testing.TB) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, in := range s.find("ENV") {
		words, err := shellWords(in.args, nil)
		if err != nil {
			t.Fatalf("Dockerfile:%d: %v", in.line, err)
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				t.Fatalf("Dockerfile:%d: ENV %q: use the KEY=VALUE form", in.line, in.args)
			}
			m[k] = v
		}
	}
	return m
}

// jsonList decodes the JSON (exec) form of ENTRYPOINT, CMD, VOLUME.
func (in instr) jsonList(t testing.TB) []string {
	t.Helper()
	var l []string
	if err := json.Unmarshal([]byte(in.args), &l); err != nil {
		t.Fatalf("Dockerfile:%d: %s %s: want the JSON form: %v", in.line, in.cmd, in.args, err)
	}
	return l
}

func loadDockerfile(t testing.TB) *dockerfile {
	t.Helper()
	d := &dockerfile{args: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(readRepoFile(t, "Dockerfile")))
	var cur strings.Builder
	start, n := 0, 0
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instr{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			st := &stage{}
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:] // --platform=…
			}
			if len(f) == 0 {
				t.Fatalf("Dockerfile:%d: FROM without an image", start)
			}
			st.image = f[0]
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			d.stages = append(d.stages, st)
		case len(d.stages) == 0 && in.cmd == "ARG":
			for _, a := range strings.Fields(in.args) {
				name, def, _ := strings.Cut(a, "=")
				d.args[name] = def
			}
		case len(d.stages) == 0:
			t.Fatalf("Dockerfile:%d: %s before the first FROM", start, in.cmd)
		default:
			st := d.stages[len(d.stages)-1]
			st.instrs = append(st.instrs, in)
		}
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment (or a parser directive), also between continuation lines
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = n
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	if len(d.stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a multi-stage build (a builder and the final image)", len(d.stages))
	}
	return d
}

// final returns the image's last stage.
func (d *dockerfile) final() *stage { return d.stages[len(d.stages)-1] }

// stageNamed returns the stage named name.
func (d *dockerfile) stageNamed(t testing.TB, name string) *stage {
	t.Helper()
	for _, s := range d.stages {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("Dockerfile: no stage named %q", name)
	return nil
}

// expand resolves $VAR and ${VAR} in s from vars, as Docker does in FROM.
func expand(s string, vars map[string]string) string {
	return os.Expand(s, func(k string) string { return vars[k] })
}

// shellWords splits a shell command line into words as sh would, with
// quotes, backslashes and $VAR/${VAR} (from vars) — no globbing, no
// command substitution (refused).
func shellWords(s string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	expandAt := func(i int) (string, int) { // s[i] == '$'
		if i+1 < len(s) && s[i+1] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "$", i + 1
			}
			return vars[s[i+2:i+end]], i + end + 1
		}
		j := i + 1
		for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if j == i+1 {
			return "$", j
		}
		return vars[s[i+1:j]], j
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			i++
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			w.WriteString(s[i+1 : i+1+end])
			inWord, i = true, i+end+2
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				switch {
				case s[i] == '\\' && i+1 < len(s) && strings.ContainsRune(`"\$`+"`", rune(s[i+1])):
					i++
					w.WriteByte(s[i])
				case s[i] == '$':
					v, next := expandAt(i)
					w.WriteString(v)
					i = next - 1
				case s[i] == '`':
					return nil, fmt.Errorf("command substitution in %q", s)
				default:
					w.WriteByte(s[i])
				}
			}
			if i >= len(s) {
				return nil, fmt.Errorf(`unterminated " in %q`, s)
			}
			inWord, i = true, i+1
		case c == '\\' && i+1 < len(s):
			w.WriteByte(s[i+1])
			inWord, i = true, i+2
		case c == '$':
			if i+1 < len(s) && s[i+1] == '(' {
				return nil, fmt.Errorf("command substitution in %q", s)
			}
			v, next := expandAt(i)
			w.WriteString(v)
			inWord, i = true, next
		case c == '`':
			return nil, fmt.Errorf("command substitution in %q", s)
		default:
			w.WriteByte(c)
			inWord, i = true, i+1
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// The Prometheus configuration, as far as the checks read it.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		Scheme        string `yaml:"scheme"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// Grafana's provisioning files.
type grafanaDatasources struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string         `yaml:"name"`
		UID       string         `yaml:"uid"`
		Type      string         `yaml:"type"`
		Access    string         `yaml:"access"`
		URL       string         `yaml:"url"`
		IsDefault bool           `yaml:"isDefault"`
		JSONData  map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
}

type grafanaDashboardProviders struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name                  string `yaml:"name"`
		Folder                string `yaml:"folder"`
		Type                  string `yaml:"type"`
		DisableDeletion       bool   `yaml:"disableDeletion"`
		AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
		UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
		Options               struct {
			Path                      string `yaml:"path"`
			FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

// A Grafana dashboard, as far as the checks read it.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Datasource *datasourceRef  `json:"datasource"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasourceRef           `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

const dashboardFile = "deploy/grafana/dashboards/mephisto.json"

func loadDashboard(t testing.TB) *dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readRepoFile(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

// allPanels returns the dashboard's panels, rows' panels included.
func (d *dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// query is one PromQL expression of the dashboard and where it is.
type query struct {
	where string
	expr  string
	// label is set for a variable's label_values(expr, label): the label
	// the variable lists.
	label string
}

var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// queries returns every PromQL expression the dashboard runs: its panels'
// targets and its variables' label_values queries.
func (d *dashboard) queries(t testing.TB) []query {
	t.Helper()
	var qs []query
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			qs = append(qs, query{where: fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), expr: tg.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Fatalf("%s: variable %s: query %s: %v", dashboardFile, v.Name, v.Query, err)
			}
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("%s: variable %s: query %q: want label_values(<selector>, <label>)", dashboardFile, v.Name, q.Query)
		}
		qs = append(qs, query{where: "variable " + v.Name, expr: m[1], label: m[2]})
	}
	return qs
}
