package deploy

// The compose file, the Dockerfile, .dockerignore and the Prometheus and
// Grafana configuration, checked offline against each other and against
// the worker's real command line.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// goRuntimeEnv are environment variables the Go runtime reads, which a
// node may set besides the worker's own.
var goRuntimeEnv = []string{"GOMEMLIMIT", "GOGC", "GOMAXPROCS", "GODEBUG", "GOTRACEBACK"}

// mephistoNode is a compose service running the image's worker, with the
// settings its flags and environment give it.
type mephistoNode struct {
	name     string
	svc      *service
	args     []string          // the container's command line after the binary
	env      map[string]string // the image's ENV with the service's environment over it
	settings map[string]setting
}

// setting is a flag's value and where it comes from: "command" or the
// environment variable's name.
type setting struct{ value, from string }

// get returns the node's value of flag, failing the test if nothing sets
// it (the checks need every address explicit).
func (n *mephistoNode) get(t testing.TB, flag string) string {
	t.Helper()
	s, ok := n.settings[flag]
	if !ok {
		t.Fatalf("service %s: --%s is not set (by its command or %s); the deployment needs it explicit", n.name, flag, envName(flag))
	}
	return s.value
}

// mephistoNodes returns the compose services built from the Dockerfile,
// with their settings, and checks that every flag and environment
// variable they are given exists in the worker's CLI.
func mephistoNodes(t testing.TB, c *composeFile, d *dockerfile, flags map[string]flagInfo) []*mephistoNode {
	t.Helper()
	final := d.final()
	imageEnv := final.env(t)
	var entry, cmd []string
	if in := final.find("ENTRYPOINT"); len(in) > 0 {
		entry = in[len(in)-1].jsonList(t)
	}
	if in := final.find("CMD"); len(in) > 0 {
		cmd = in[len(in)-1].jsonList(t)
	}
	var nodes []*mephistoNode
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if s.Build == nil {
			continue
		}
		n := &mephistoNode{name: name, svc: s, env: map[string]string{}, settings: map[string]setting{}}
		argv := slices.Concat(entry, cmd)
		if s.Entrypoint != nil {
			argv = slices.Concat(s.Entrypoint, cmd)
		}
		if s.Command != nil {
			e := entry
			if s.Entrypoint != nil {
				e = s.Entrypoint
			}
			argv = slices.Concat(e, s.Command)
		}
		if len(argv) < 2 || argv[1] != "worker" {
			t.Fatalf("service %s runs %q, want the image's binary with the worker command", name, argv)
		}
		n.args = argv[1:]
		for i := 1; i < len(n.args); i++ {
			a := n.args[i]
			flag, ok := strings.CutPrefix(a, "--")
			if !ok {
				t.Fatalf("service %s: command argument %q is not a flag (the worker takes no arguments)", name, a)
			}
			flag, value, hasValue := strings.Cut(flag, "=")
			fi, known := flags[flag]
			if !known {
				t.Fatalf("service %s: flag --%s does not exist in the worker's CLI (worker --help)", name, flag)
			}
			switch {
			case hasValue:
			case fi.typ == "": // a bool
				value = "true"
			case i+1 < len(n.args):
				i++
				value = n.args[i]
			default:
				t.Fatalf("service %s: flag --%s has no value", name, flag)
			}
			if prev, ok := n.settings[flag]; ok && strings.HasSuffix(fi.typ, "s") {
				value = prev.value + "," + value // a repeated list flag
			}
			n.settings[flag] = setting{value, "command"}
		}
		for k, v := range imageEnv {
			n.env[k] = v
		}
		for k, v := range s.Environment {
			n.env[k] = v
		}
		src := string(readRepoFile(t, "examples/"+composeExample(t, s)+"/main.go"))
		for _, k := range sortedKeys(n.env) {
			v := n.env[k]
			if rest, ok := strings.CutPrefix(k, "MEPHISTO_"); ok {
				flag := strings.ToLower(strings.ReplaceAll(rest, "_", "-"))
				if _, known := flags[flag]; !known || envName(flag) != k {
					t.Errorf("service %s: environment %s names no worker flag (worker --help has no --%s)", name, k, flag)
					continue
				}
				if _, set := n.settings[flag]; !set {
					n.settings[flag] = setting{v, k}
				}
				continue
			}
			if !slices.Contains(goRuntimeEnv, k) && !strings.Contains(src, strconv.Quote(k)) {
				t.Errorf("service %s: environment %s is neither a worker setting (MEPHISTO_*), one of Go's (%s), nor read by the example (no %q in its main.go)",
					name, k, strings.Join(goRuntimeEnv, ", "), k)
			}
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// composeExample returns the example a service's build builds: its
// EXAMPLE build arg, or the Dockerfile's default.
func composeExample(t testing.TB, s *service) string {
	t.Helper()
	if e, ok := s.Build.Args["EXAMPLE"]; ok {
		return e
	}
	for _, st := range loadDockerfile(t).stages {
		if e, ok := st.argDefaults()["EXAMPLE"]; ok {
			return e
		}
	}
	t.Fatal("Dockerfile: no EXAMPLE build arg")
	return ""
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// hostPort splits addr, failing the test with what.
func hostPort(t testing.TB, what, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: address %q: %v", what, addr, err)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		t.Fatalf("%s: address %q: bad port", what, addr)
	}
	return h, p
}

// listensOnAll reports whether a listen address's host binds every
// interface, so that other containers reach it.
func listensOnAll(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }

// kafkaListeners parses Kafka's NAME://host:port lists.
func kafkaListeners(t testing.TB, what, v string) map[string][2]string {
	t.Helper()
	m := map[string][2]string{}
	for _, l := range strings.Split(v, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(l), "://")
		if !ok {
			t.Fatalf("kafka %s: %q is not NAME://host:port", what, l)
		}
		h, p := hostPort(t, "kafka "+what, addr)
		m[name] = [2]string{h, p}
	}
	return m
}

// TestCompose checks docker-compose.yml: it parses (strictly), every
// image is pinned, Kafka runs in KRaft mode on the release the real-Kafka
// test tier runs, the Mephisto nodes pass only flags and variables the
// worker's CLI has, and every address points to a service and a port it
// listens on.
func TestCompose(t *testing.T) {
	c := loadCompose(t)
	d := loadDockerfile(t)
	flags := workerFlags(t)
	nodes := mephistoNodes(t, c, d, flags)
	if len(nodes) != 3 {
		t.Fatalf("docker-compose.yml: %d Mephisto nodes (services built from the Dockerfile), want 3", len(nodes))
	}

	t.Run("images", func(t *testing.T) {
		for _, name := range sortedKeys(c.Services) {
			s := c.Services[name]
			if s.Build != nil {
				if s.Build.Context != "." || (s.Build.Dockerfile != "" && s.Build.Dockerfile != "Dockerfile") {
					t.Errorf("service %s: builds %s/%s, want the repository's Dockerfile", name, s.Build.Context, s.Build.Dockerfile)
				}
				declared := maps.Clone(d.args)
				for _, st := range d.stages {
					for k := range st.argDefaults() {
						declared[k] = ""
					}
				}
				for k := range s.Build.Args {
					if _, ok := declared[k]; !ok {
						t.Errorf("service %s: build arg %s is not an ARG of the Dockerfile", name, k)
					}
				}
				ex := composeExample(t, s)
				if _, err := os.Stat(repoPath("examples/" + ex + "/main.go")); err != nil {
					t.Errorf("service %s: builds example %q: %v", name, ex, err)
				}
				continue
			}
			ref := s.Image
			_, tag, ok := strings.Cut(ref[strings.LastIndexByte(ref, '/')+1:], ":")
			if !ok || tag == "" || tag == "latest" {
				t.Errorf("service %s: image %q is not pinned to a version", name, ref)
			}
		}
	})

	kafka := c.Services["kafka"]
	if kafka == nil {
		t.Fatal("docker-compose.yml: no kafka service")
	}
	ke := kafka.Environment
	listeners := kafkaListeners(t, "KAFKA_LISTENERS", ke["KAFKA_LISTENERS"])
	advertised := kafkaListeners(t, "KAFKA_ADVERTISED_LISTENERS", ke["KAFKA_ADVERTISED_LISTENERS"])

	t.Run("kafka", func(t *testing.T) {
		pom := string(readRepoFile(t, "test/kafka/pom.xml"))
		m := regexp.MustCompile(`<kafka\.version>([^<]+)</kafka\.version>`).FindStringSubmatch(pom)
		if m == nil {
			t.Fatal("test/kafka/pom.xml: no <kafka.version>")
		}
		if want := "apache/kafka:" + m[1]; kafka.Image != want {
			t.Errorf("kafka image %q, want %q: the release the real-Kafka test tier runs (test/kafka/pom.xml)", kafka.Image, want)
		}
		roles := strings.Split(ke["KAFKA_PROCESS_ROLES"], ",")
		if !slices.Contains(roles, "broker") || !slices.Contains(roles, "controller") {
			t.Errorf("KAFKA_PROCESS_ROLES %q, want broker,controller (KRaft, one combined node)", ke["KAFKA_PROCESS_ROLES"])
		}
		if id, err := base64.RawURLEncoding.DecodeString(ke["CLUSTER_ID"]); err != nil || len(id) != 16 {
			t.Errorf("CLUSTER_ID %q: want 16 bytes in URL-safe base64 without padding (kafka-storage random-uuid)", ke["CLUSTER_ID"])
		}
		protocols := map[string]bool{}
		for _, p := range strings.Split(ke["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"], ",") {
			name, _, _ := strings.Cut(p, ":")
			protocols[name] = true
		}
		for name := range listeners {
			if !protocols[name] {
				t.Errorf("listener %s has no entry in KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", name)
			}
		}
		controllers := strings.Split(ke["KAFKA_CONTROLLER_LISTENER_NAMES"], ",")
		for _, v := range strings.Split(ke["KAFKA_CONTROLLER_QUORUM_VOTERS"], ",") {
			id, addr, ok := strings.Cut(v, "@")
			if !ok {
				t.Errorf("KAFKA_CONTROLLER_QUORUM_VOTERS %q: want id@host:port", v)
				continue
			}
			if id != ke["KAFKA_NODE_ID"] {
				t.Errorf("quorum voter %s: id %s, but the broker's KAFKA_NODE_ID is %s", v, id, ke["KAFKA_NODE_ID"])
			}
			h, p := hostPort(t, "quorum voter", addr)
			if c.Services[h] != kafka {
				t.Errorf("quorum voter %s: %s is not the kafka service", v, h)
			}
			served := false
			for _, name := range controllers {
				served = served || listeners[name][1] == p
			}
			if !served {
				t.Errorf("quorum voter %s: no controller listener (%v) on port %s: %v", v, controllers, p, listeners)
			}
		}
		if name := ke["KAFKA_INTER_BROKER_LISTENER_NAME"]; listeners[name] == ([2]string{}) {
			t.Errorf("KAFKA_INTER_BROKER_LISTENER_NAME %q is not a listener", name)
		}
		for name, a := range advertised {
			l, ok := listeners[name]
			if !ok {
				t.Errorf("advertised listener %s is not in KAFKA_LISTENERS", name)
				continue
			}
			if c.Services[a[0]] == kafka {
				if a[1] != l[1] {
					t.Errorf("advertised listener %s: kafka:%s, but it listens on port %s", name, a[1], l[1])
				}
				continue
			}
			// Advertised to the host: published on the same port.
			if !slices.Contains(kafka.Ports, a[1]+":"+l[1]) {
				t.Errorf("advertised listener %s (%s:%s) for the host: want the port published as %q, ports %q", name, a[0], a[1], a[1]+":"+l[1], kafka.Ports)
			}
		}
		if dir := ke["KAFKA_LOG_DIRS"]; !isNamedVolume(c, kafka.mounts()[dir]) {
			t.Errorf("KAFKA_LOG_DIRS %q is not on a named volume: %q", dir, kafka.Volumes)
		}
		if kafka.Healthcheck == nil || len(kafka.Healthcheck.Test) == 0 {
			t.Error("kafka has no healthcheck: the nodes wait for service_healthy")
		}
	})

	final := d.final()
	var exposed []string
	for _, in := range final.find("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.args)...)
	}
	var volumes []string
	for _, in := range final.find("VOLUME") {
		volumes = append(volumes, in.jsonList(t)...)
	}

	t.Run("nodes", func(t *testing.T) {
		ids, webs, adverts := map[string]string{}, map[string]string{}, map[string]bool{}
		gossipAddrs := map[string]string{} // advertised ip:port → node
		subnets := map[string]netip.Prefix{}
		ranges := map[string]netip.Prefix{}
		for name, nw := range c.Networks {
			for _, cfg := range nw.IPAM.Config {
				if p, err := netip.ParsePrefix(cfg.Subnet); err == nil {
					subnets[name] = p
				} else {
					t.Errorf("network %s: subnet %q: %v", name, cfg.Subnet, err)
				}
				if cfg.IPRange != "" {
					if p, err := netip.ParsePrefix(cfg.IPRange); err == nil {
						ranges[name] = p
					} else {
						t.Errorf("network %s: ip_range %q: %v", name, cfg.IPRange, err)
					}
				}
			}
		}
		for _, n := range nodes {
			id := n.get(t, "node-id")
			if other, dup := ids[id]; dup {
				t.Errorf("services %s and %s both have node id %s", other, n.name, id)
			}
			ids[id] = n.name

			// Kafka: every broker is the kafka service on an advertised
			// listener of its own name.
			for _, b := range strings.Split(n.get(t, "brokers"), ",") {
				h, p := hostPort(t, n.name+" --brokers", b)
				if c.Services[h] != kafka {
					t.Errorf("service %s: broker %s is not the kafka service", n.name, b)
					continue
				}
				ok := false
				for _, a := range advertised {
					ok = ok || (a[0] == h && a[1] == p)
				}
				if !ok {
					t.Errorf("service %s: broker %s is not one of Kafka's advertised listeners %v", n.name, b, advertised)
				}
			}
			if cond, ok := n.svc.DependsOn["kafka"]; !ok || cond != "service_healthy" {
				t.Errorf("service %s: depends_on kafka %q, want condition service_healthy", n.name, cond)
			}

			// HTTP on every interface, on a port the image exposes.
			wh, wp := hostPort(t, n.name+" --web", n.get(t, "web"))
			if !listensOnAll(wh) {
				t.Errorf("service %s: --web %s: other containers (Prometheus) cannot reach it; listen on 0.0.0.0", n.name, n.get(t, "web"))
			}
			webs[n.name] = wp
			if !slices.Contains(exposed, wp) && !slices.Contains(exposed, wp+"/tcp") {
				t.Errorf("service %s: web port %s is not EXPOSEd by the Dockerfile (%v)", n.name, wp, exposed)
			}
			published := false
			for _, p := range n.svc.Ports {
				parts := strings.Split(p, ":")
				published = published || parts[len(parts)-1] == wp
			}
			if !published {
				t.Errorf("service %s: web port %s is not published (ports %q)", n.name, wp, n.svc.Ports)
			}

			// Gossip and the actor transport: every interface, advertised
			// at the node's fixed address.
			adv := n.get(t, "advertise")
			ip, err := netip.ParseAddr(adv)
			if err != nil {
				t.Errorf("service %s: --advertise %q is not an IP address: memberlist refuses host names", n.name, adv)
				continue
			}
			if adverts[adv] {
				t.Errorf("service %s: --advertise %s is another node's too", n.name, adv)
			}
			adverts[adv] = true
			fixed := false
			for nw, a := range n.svc.Networks {
				if a != adv {
					continue
				}
				fixed = true
				if p, ok := subnets[nw]; !ok || !p.Contains(ip) {
					t.Errorf("service %s: address %s is outside network %s's subnet %v", n.name, adv, nw, subnets[nw])
				}
				if r, ok := ranges[nw]; ok && r.Contains(ip) {
					t.Errorf("service %s: fixed address %s lies in network %s's ip_range %v, which compose hands out to other services", n.name, adv, nw, r)
				}
			}
			if !fixed {
				t.Errorf("service %s: --advertise %s is not its ipv4_address on any network (%v)", n.name, adv, n.svc.Networks)
			}
			gh, gp := hostPort(t, n.name+" --gossip", n.get(t, "gossip"))
			if !listensOnAll(gh) {
				t.Errorf("service %s: --gossip %s: the other nodes cannot reach it", n.name, n.get(t, "gossip"))
			}
			ah, ap := hostPort(t, n.name+" --actor", n.get(t, "actor"))
			if !listensOnAll(ah) || ap == "0" {
				t.Errorf("service %s: --actor %s: want every interface and a fixed port", n.name, n.get(t, "actor"))
			}
			for what, p := range map[string]string{"gossip": gp, "actor": ap} {
				if !slices.Contains(exposed, p) && !slices.Contains(exposed, p+"/tcp") {
					t.Errorf("service %s: %s port %s is not EXPOSEd by the Dockerfile (%v)", n.name, what, p, exposed)
				}
			}
			if gp == wp || ap == wp || ap == gp {
				t.Errorf("service %s: web %s, gossip %s and actor %s ports must differ", n.name, wp, gp, ap)
			}
			gossipAddrs[net.JoinHostPort(adv, gp)] = n.name

			// Its own data dir, on a named volume.
			dir := n.get(t, "data-dir")
			vol := n.svc.mounts()[dir]
			if !isNamedVolume(c, vol) {
				t.Errorf("service %s: --data-dir %s is not on a named volume (volumes %q)", n.name, dir, n.svc.Volumes)
			}
			if !slices.Contains(volumes, dir) {
				t.Errorf("service %s: --data-dir %s is not a VOLUME of the image (%v)", n.name, dir, volumes)
			}
		}
		// Each node's data volume is its own.
		seen := map[string]string{}
		for _, n := range nodes {
			vol := n.svc.mounts()[n.get(t, "data-dir")]
			if other, dup := seen[vol]; dup && vol != "" {
				t.Errorf("services %s and %s share the data volume %s", other, n.name, vol)
			}
			seen[vol] = n.name
		}
		// Every gossip seed is a node's advertised gossip address, and
		// every node can reach one besides itself.
		for _, n := range nodes {
			others := 0
			for _, seed := range strings.Split(n.get(t, "join"), ",") {
				target, ok := gossipAddrs[seed]
				switch {
				case !ok:
					t.Errorf("service %s: gossip seed %s is no node's advertised gossip address (%v)", n.name, seed, gossipAddrs)
				case target != n.name:
					others++
				}
			}
			if others == 0 {
				t.Errorf("service %s: no gossip seed besides itself", n.name)
			}
		}
		// Published host ports are unique across services.
		hostPorts := map[string]string{}
		for _, name := range sortedKeys(c.Services) {
			for _, p := range c.Services[name].Ports {
				parts := strings.Split(p, ":")
				if len(parts) < 2 {
					continue
				}
				hp := parts[len(parts)-2]
				if other, dup := hostPorts[hp]; dup {
					t.Errorf("services %s and %s both publish host port %s", other, name, hp)
				}
				hostPorts[hp] = name
			}
		}
	})

	prom := c.Services["prometheus"]
	if prom == nil {
		t.Fatal("docker-compose.yml: no prometheus service")
	}
	conf := "/etc/prometheus/prometheus.yml"
	listen := ":9090"
	for _, a := range prom.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			conf = v
		}
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			listen = v
		}
	}
	src, ok := prom.mounts()[conf]
	if !ok {
		t.Fatalf("prometheus: its configuration %s is not mounted (volumes %q)", conf, prom.Volumes)
	}
	rel := path.Clean(strings.TrimPrefix(src, "./"))
	var pc promConfig
	decodeYAML(t, rel, readRepoFile(t, rel), &pc)

	t.Run("prometheus", func(t *testing.T) {
		_, port := hostPort(t, "prometheus --web.listen-address", listen)
		if !prom.containerPorts()[port] {
			t.Errorf("prometheus listens on %s but publishes %q", port, prom.Ports)
		}
		targeted := map[string]int{}
		for _, sc := range pc.ScrapeConfigs {
			if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
				t.Errorf("%s: job %s scrapes %s, the workers serve /metrics", rel, sc.JobName, sc.MetricsPath)
			}
			for _, st := range sc.StaticConfigs {
				for k := range st.Labels {
					if k == "app" || k == "node" {
						t.Errorf("%s: job %s sets label %s, which the workers' series carry themselves (Prometheus would rename theirs exported_%s)", rel, sc.JobName, k, k)
					}
				}
				for _, tg := range st.Targets {
					h, p := hostPort(t, rel+" target", tg)
					var node *mephistoNode
					for _, n := range nodes {
						if n.name == h {
							node = n
						}
					}
					if node == nil {
						t.Errorf("%s: target %s is not a Mephisto node service", rel, tg)
						continue
					}
					if _, wp := hostPort(t, node.name+" --web", node.get(t, "web")); wp != p {
						t.Errorf("%s: target %s, but %s serves HTTP on port %s", rel, tg, h, wp)
					} else {
						targeted[h]++
					}
				}
			}
		}
		for _, n := range nodes {
			if targeted[n.name] != 1 {
				t.Errorf("%s: node %s is scraped %d times, want once", rel, n.name, targeted[n.name])
			}
		}
	})

	t.Run("grafana", func(t *testing.T) {
		g := c.Services["grafana"]
		if g == nil {
			t.Fatal("docker-compose.yml: no grafana service")
		}
		mounts := g.mounts()
		prov, ok := mounts["/etc/grafana/provisioning"]
		if !ok {
			t.Fatalf("grafana: nothing mounted on /etc/grafana/provisioning (volumes %q)", g.Volumes)
		}
		provDir := path.Clean(strings.TrimPrefix(prov, "./"))
		// A path in the grafana container → the repository file behind it.
		inRepo := func(p string) (string, bool) {
			for target, src := range mounts {
				if p == target || strings.HasPrefix(p, target+"/") {
					if !strings.HasPrefix(src, "./") {
						return "", false
					}
					return path.Join(strings.TrimPrefix(src, "./"), strings.TrimPrefix(p, target)), true
				}
			}
			return "", false
		}
		uids := map[string]bool{}
		dsFiles, _ := filepath.Glob(repoPath(provDir + "/datasources/*.y*ml"))
		if len(dsFiles) == 0 {
			t.Fatalf("%s/datasources: no provisioning file", provDir)
		}
		for _, f := range dsFiles {
			var ds grafanaDatasources
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			decodeYAML(t, f, b, &ds)
			for _, s := range ds.Datasources {
				uids[s.UID] = true
				if s.UID == "" || s.Type != "prometheus" {
					t.Errorf("%s: datasource %s: uid %q type %q, want a uid and type prometheus", f, s.Name, s.UID, s.Type)
				}
				u, err := url.Parse(s.URL)
				if err != nil {
					t.Errorf("%s: datasource %s: url %q: %v", f, s.Name, s.URL, err)
					continue
				}
				if c.Services[u.Hostname()] != prom {
					t.Errorf("%s: datasource %s: %s is not the prometheus service", f, s.Name, s.URL)
				}
				if !prom.containerPorts()[u.Port()] {
					t.Errorf("%s: datasource %s: port %s, prometheus listens on %q", f, s.Name, u.Port(), prom.Ports)
				}
				if ti, _ := s.JSONData["timeInterval"].(string); ti != "" && ti != pc.Global.ScrapeInterval {
					t.Errorf("%s: datasource %s: timeInterval %s, but Prometheus scrapes every %s", f, s.Name, ti, pc.Global.ScrapeInterval)
				}
			}
		}
		provFiles, _ := filepath.Glob(repoPath(provDir + "/dashboards/*.y*ml"))
		if len(provFiles) == 0 {
			t.Fatalf("%s/dashboards: no provisioning file", provDir)
		}
		loaded := false
		for _, f := range provFiles {
			var dp grafanaDashboardProviders
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			decodeYAML(t, f, b, &dp)
			for _, p := range dp.Providers {
				dir, ok := inRepo(p.Options.Path)
				if !ok || p.Type != "file" {
					t.Errorf("%s: provider %s: path %s (type %s) is not a repository directory mounted into grafana", f, p.Name, p.Options.Path, p.Type)
					continue
				}
				if _, err := os.Stat(repoPath(dir + "/" + path.Base(dashboardFile))); err == nil {
					loaded = loaded || path.Join(dir, path.Base(dashboardFile)) == dashboardFile
				}
			}
		}
		if !loaded {
			t.Errorf("no dashboard provider loads %s", dashboardFile)
		}
		if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
			if f, ok := inRepo(home); !ok || f != dashboardFile {
				t.Errorf("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH %s is not %s mounted", home, dashboardFile)
			}
		}
		for _, p := range loadDashboard(t).allPanels() {
			refs := []*datasourceRef{p.Datasource}
			for _, tg := range p.Targets {
				refs = append(refs, tg.Datasource)
			}
			for _, r := range refs {
				if r != nil && !uids[r.UID] {
					t.Errorf("%s: panel %q: datasource uid %q is not provisioned (%v)", dashboardFile, p.Title, r.UID, uids)
				}
			}
		}
		if !g.containerPorts()["3000"] {
			t.Errorf("grafana: port 3000 not published (%q)", g.Ports)
		}
	})

	// The dashboard's job matchers name the scrape job.
	t.Run("dashboard-job", func(t *testing.T) {
		jobs := map[string]bool{}
		for _, sc := range pc.ScrapeConfigs {
			jobs[sc.JobName] = true
		}
		re := regexp.MustCompile(`\bjob\s*=~?\s*"([^"]*)"`)
		for _, q := range loadDashboard(t).queries(t) {
			for _, m := range re.FindAllStringSubmatch(q.expr, -1) {
				if !jobs[m[1]] {
					t.Errorf("%s: %s: job %q is not a scrape job of Prometheus (%v)", dashboardFile, q.where, m[1], jobs)
				}
			}
		}
	})
}

// isNamedVolume reports whether source is a volume declared in the
// compose file's top-level volumes (not a bind mount).
func isNamedVolume(c *composeFile, source string) bool {
	if source == "" || strings.ContainsAny(source, "./") {
		return false
	}
	_, ok := c.Volumes[source]
	return ok
}

// TestDockerfile checks the Dockerfile against go.mod and itself: the
// builder's Go is go.mod's, the final image is distroless (or scratch) and
// runs the built binary as a non-root user, with the data dir on a volume
// it owns.
func TestDockerfile(t *testing.T) {
	d := loadDockerfile(t)
	g := dockerGoBuild(t, d, composeBuildArgs(t))

	gomod := string(readRepoFile(t, "go.mod"))
	want := regexp.MustCompile(`(?m)^go (\S+)\s*$`).FindStringSubmatch(gomod)
	if tc := regexp.MustCompile(`(?m)^toolchain go(\S+)\s*$`).FindStringSubmatch(gomod); tc != nil {
		want = tc
	}
	if want == nil {
		t.Fatal("go.mod: no go line")
	}
	builder := d.stageNamed(t, g.stage)
	img := expand(builder.image, d.args)
	if img != "golang:"+want[1] && !strings.HasPrefix(img, "golang:"+want[1]+"-") {
		t.Errorf("Dockerfile: builder image %s (%s), want golang:%s, go.mod's Go", img, builder.image, want[1])
	}

	final := d.final()
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
		t.Errorf("Dockerfile: final image %s, want gcr.io/distroless/static… or scratch", final.image)
	}
	users := final.find("USER")
	if len(users) == 0 {
		t.Fatal("Dockerfile: the final image sets no USER: it would run as root")
	}
	user := users[len(users)-1].args
	if u, _, _ := strings.Cut(user, ":"); u == "root" || u == "0" {
		t.Errorf("Dockerfile: USER %s is root", user)
	}
	entry := final.find("ENTRYPOINT")
	if len(entry) == 0 {
		t.Fatal("Dockerfile: no ENTRYPOINT")
	}
	bin := entry[len(entry)-1].jsonList(t)[0]
	copied := false
	env := final.env(t)
	dataDir := env["MEPHISTO_DATA_DIR"]
	ownsData := false
	for _, in := range final.find("COPY") {
		f := strings.Fields(in.args)
		var from, chown string
		for len(f) > 0 && strings.HasPrefix(f[0], "--") {
			if v, ok := strings.CutPrefix(f[0], "--from="); ok {
				from = v
			}
			if v, ok := strings.CutPrefix(f[0], "--chown="); ok {
				chown = v
			}
			f = f[1:]
		}
		if len(f) == 2 && from == g.stage && f[0] == g.out && f[1] == bin {
			copied = true
		}
		if len(f) == 2 && f[1] == dataDir && chown != "" && chown == user {
			ownsData = true
		}
	}
	if !copied {
		t.Errorf("Dockerfile: ENTRYPOINT runs %s, but no COPY --from=%s %s %s puts the built binary there", bin, g.stage, g.out, bin)
	}
	if dataDir == "" {
		t.Fatal("Dockerfile: the final image sets no MEPHISTO_DATA_DIR")
	}
	var volumes []string
	for _, in := range final.find("VOLUME") {
		volumes = append(volumes, in.jsonList(t)...)
	}
	if !slices.Contains(volumes, dataDir) {
		t.Errorf("Dockerfile: data dir %s is not a VOLUME (%v)", dataDir, volumes)
	}
	if !ownsData {
		t.Errorf("Dockerfile: no COPY --chown=%s puts the data dir %s in place: a fresh volume would be root's, and the worker could not write it", user, dataDir)
	}
	if web := env["MEPHISTO_WEB"]; web != "" {
		_, p := hostPort(t, "Dockerfile MEPHISTO_WEB", web)
		var exposed []string
		for _, in := range final.find("EXPOSE") {
			exposed = append(exposed, strings.Fields(in.args)...)
		}
		if !slices.Contains(exposed, p) && !slices.Contains(exposed, p+"/tcp") {
			t.Errorf("Dockerfile: MEPHISTO_WEB %s, but port %s is not EXPOSEd (%v)", web, p, exposed)
		}
	}
}

// TestDockerignore checks that .dockerignore keeps in the build context
// everything the image's build reads: go.mod, go.sum, and every file of
// the main module's packages the example imports (embedded files too).
func TestDockerignore(t *testing.T) {
	var patterns []string
	for _, line := range strings.Split(string(readRepoFile(t, ".dockerignore")), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	d := loadDockerfile(t)
	g := dockerGoBuild(t, d, composeBuildArgs(t))
	pkg := g.args[len(g.args)-1]
	cmd := exec.Command("go", "list", "-deps", "-json", pkg)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			Dir        string
			Standard   bool
			Module     *struct{ Main bool }
			GoFiles    []string
			EmbedFiles []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Standard || p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(abs, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(p.GoFiles, p.EmbedFiles) {
			files = append(files, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(files) < 10 {
		t.Fatalf("go list -deps %s: only %d files of the module: %v", pkg, len(files), files)
	}
	for _, f := range files {
		if p := dockerignored(t, patterns, f); p != "" {
			t.Errorf(".dockerignore: %q excludes %s, which the image's build needs", p, f)
		}
	}
	for _, keep := range []string{"Dockerfile", "examples/" + composeExample(t, firstBuilt(t)) + "/main.go"} {
		if p := dockerignored(t, patterns, keep); p != "" {
			t.Errorf(".dockerignore: %q excludes %s", p, keep)
		}
	}
	for _, drop := range []string{".git/HEAD", ".run/wordcount", "bin/wordcount"} {
		if dockerignored(t, patterns, drop) == "" {
			t.Errorf(".dockerignore: %s is sent to the daemon with every build", drop)
		}
	}
}

func firstBuilt(t testing.TB) *service {
	t.Helper()
	c := loadCompose(t)
	for _, name := range sortedKeys(c.Services) {
		if c.Services[name].Build != nil {
			return c.Services[name]
		}
	}
	t.Fatal("docker-compose.yml: no service builds the Dockerfile")
	return nil
}

// dockerignored returns the pattern that excludes file (a slash path
// relative to the context) under Docker's rules — the last matching
// pattern decides, "!" re-includes, a pattern matching a directory
// excludes what is under it, "**" matches any number of directories —
// or "" if the file is sent.
func dockerignored(t testing.TB, patterns []string, file string) string {
	t.Helper()
	decided := ""
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		pat := path.Clean(strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/"))
		re, err := globRegexp(pat)
		if err != nil {
			t.Fatalf(".dockerignore: %q: %v", p, err)
		}
		match := false
		for dir := file; dir != "." && dir != "/"; dir = path.Dir(dir) {
			match = match || re.MatchString(dir)
		}
		if match {
			if neg {
				decided = ""
			} else {
				decided = p
			}
		}
	}
	return decided
}

// globRegexp turns a .dockerignore pattern into a regexp over whole
// paths.
func globRegexp(pat string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pat); i++ {
		switch c := pat[i]; {
		case strings.HasPrefix(pat[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(pat[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[' || c == '\\':
			return nil, fmt.Errorf("character classes and escapes are not supported by this check")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}
