package app

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/trackops/trackops/internal/config"
)

// The deployment files cannot be run here (no Docker, no cluster), so these
// tests hold them against the binary: the variables they set exist, the
// values load into a valid configuration, roles and commands exist, and
// everything they reference — services, volumes, secrets, mounted files —
// is there. deploy/k8s has its own module that decodes the Kubernetes
// manifests into the k8s.io/api types.

const repoRoot = "../.."

// knownVariables are the TRACKOPS_* variables TrackOps reads, recorded by
// handing internal/config, the only reader of the environment, a getenv
// that notes the names it is asked for.
func knownVariables(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	record := func(set map[string]string) func(string) string {
		return func(k string) string { names[k] = true; return set[k] }
	}
	_, _ = config.LoadFrom(record(nil))
	if !names["TRACKOPS_DATABASE_URL"] || !names["TRACKOPS_DATABASE_DIRECT_URL"] || !names["TRACKOPS_KAFKA_SASL_PASSWORD"] {
		t.Fatalf("recording the environment readers missed names: %v", names)
	}
	return names
}

// variableRe finds variable names, and families of them written with a
// star (TRACKOPS_KAFKA_SASL_*).
var variableRe = regexp.MustCompile(`TRACKOPS_[A-Z0-9_]*[A-Z0-9](_?\*)?`)

// isKnown reports whether name, or for a family any member, is known.
func isKnown(known map[string]bool, name string) bool {
	if prefix, ok := strings.CutSuffix(name, "*"); ok {
		for k := range known {
			if strings.HasPrefix(k, prefix) && k != prefix {
				return true
			}
		}
		return false
	}
	return known[name]
}

// TestDeployFilesUseKnownVariables: every TRACKOPS_* name in the deployment
// files and the docs is one TrackOps reads (test-harness variables aside).
func TestDeployFilesUseKnownVariables(t *testing.T) {
	t.Parallel()
	known := knownVariables(t)
	files := []string{filepath.Join(repoRoot, "Dockerfile"), filepath.Join(repoRoot, "README.md")}
	docs, _ := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	files = append(files, docs...)
	_ = filepath.WalkDir(filepath.Join(repoRoot, "deploy"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range variableRe.FindAllString(string(b), -1) {
			if !isKnown(known, name) && !strings.HasPrefix(name, "TRACKOPS_TEST_") {
				t.Errorf("%s: %s is not a variable TrackOps reads", strings.TrimPrefix(f, repoRoot+"/"), name)
			}
		}
	}
}

// composeFile is the part of the Compose specification deploy/compose.yaml
// uses; unknown keys are refused, so a misspelt one fails here.
type composeFile struct {
	Services   map[string]composeService `yaml:"services"`
	Secrets    map[string]map[string]any `yaml:"secrets"`
	Volumes    map[string]any            `yaml:"volumes"`
	Extensions map[string]any            `yaml:",inline"` // x-* anchors
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       string            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   yaml.Node         `yaml:"depends_on"`
	Volumes     []string          `yaml:"volumes"`
	Secrets     []string          `yaml:"secrets"`
	Ports       []string          `yaml:"ports"`
	Healthcheck map[string]any    `yaml:"healthcheck"`
	Restart     string            `yaml:"restart"`
}

// dependsOn reads depends_on in its list or map form.
func (s composeService) dependsOn(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch s.DependsOn.Kind {
	case 0:
	case yaml.SequenceNode:
		var names []string
		if err := s.DependsOn.Decode(&names); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			out[n] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := s.DependsOn.Decode(&m); err != nil {
			t.Fatal(err)
		}
		for n, c := range m {
			out[n] = c.Condition
		}
	default:
		t.Fatalf("depends_on: unexpected YAML kind %v", s.DependsOn.Kind)
	}
	return out
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c composeFile
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	for k := range c.Extensions {
		if !strings.HasPrefix(k, "x-") {
			t.Fatalf("deploy/compose.yaml: unknown top-level key %q", k)
		}
	}
	return c
}

// TestComposeFile checks deploy/compose.yaml against the binary and itself.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	deployDir := filepath.Join(repoRoot, "deploy")
	for _, want := range []string{"postgres", "redis", "kafka-1", "kafka-2", "kafka-3", "migrate", "api", "relay", "cdc", "prometheus", "grafana"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("service %s is missing", want)
		}
	}

	roles := map[Role]bool{}
	strategies := map[string][]string{}
	for name, s := range c.Services {
		if (s.Image == "") == (s.Build == "") {
			t.Errorf("%s: needs an image or a build, not both or neither", name)
		}
		for dep, cond := range s.dependsOn(t) {
			target, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			case cond == "service_healthy" && target.Healthcheck == nil:
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			case !slices.Contains([]string{"service_started", "service_healthy", "service_completed_successfully"}, cond):
				t.Errorf("%s: depends_on %s condition %q", name, dep, cond)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join(deployDir, src)); err != nil {
					t.Errorf("%s mounts %s, which is not in the repository: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s uses volume %s, which is not declared", name, src)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("%s uses secret %s, which is not declared", name, sec)
			}
		}
		if s.Build == "" {
			continue
		}
		// A TrackOps service: the image built from the repository.
		if _, err := os.Stat(filepath.Join(deployDir, s.Build, "Dockerfile")); err != nil {
			t.Errorf("%s: build context %s has no Dockerfile", name, s.Build)
		}
		if len(s.Command) == 0 || lookup(Commands(), s.Command[0]) == nil {
			t.Errorf("%s: command %v is not a trackops command", name, s.Command)
			continue
		}
		cfg := composeConfig(t, name, s)
		if s.Command[0] == "run" {
			fs := newFlagSet("run", &bytes.Buffer{})
			rolesFlag := fs.String("roles", "all", "")
			if err := fs.Parse(s.Command[1:]); err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			rs, err := ParseRoles(*rolesFlag)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			for r := range rs {
				roles[r] = true
			}
			strategies[cfg.EventStrategy] = append(strategies[cfg.EventStrategy], name)
			if rs.Has(RoleCDC) && cfg.EventStrategy != config.StrategyCDC {
				t.Errorf("%s runs the cdc role under the %s strategy: its built-in connector would never start", name, cfg.EventStrategy)
			}
			if cfg.Kafka.Embedded() {
				t.Errorf("%s: no TRACKOPS_KAFKA_BROKERS; each process would start its own broker", name)
			}
		}
	}
	for _, r := range AllRoles {
		if !roles[r] {
			t.Errorf("role %s runs in no service", r)
		}
	}
	if len(strategies) != 1 {
		t.Errorf("services disagree on the event strategy: %v (orders would be published twice, or never)", strategies)
	}

	if pg := c.Services["postgres"]; !slices.Contains(pg.Command, "wal_level=logical") {
		t.Errorf("postgres runs %v; the cdc strategy needs wal_level=logical", pg.Command)
	}
	checkKafkaQuorum(t, c)
	checkObservability(t, c, deployDir)
}

// composeConfig loads the configuration a TrackOps service of the compose
// file would run with; a secret file it names is stood in for by a local
// file holding a well-formed key.
func composeConfig(t *testing.T, name string, s composeService) config.Config {
	t.Helper()
	env := map[string]string{}
	for k, v := range s.Environment {
		if strings.HasSuffix(k, "_FILE") && strings.HasPrefix(v, "/run/secrets/") {
			secret := strings.TrimPrefix(v, "/run/secrets/")
			if !slices.Contains(s.Secrets, secret) {
				t.Errorf("%s: %s names secret %s, which the service does not mount", name, k, secret)
			}
			f := filepath.Join(t.TempDir(), secret)
			if err := os.WriteFile(f, []byte(bootstrapKeyForTests+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			v = f
		}
		env[k] = v
	}
	cfg, err := config.LoadFrom(func(k string) string { return env[k] })
	if err != nil {
		t.Errorf("%s: its environment does not load: %v", name, err)
	}
	return cfg
}

// checkKafkaQuorum: three KRaft nodes that are brokers and controllers, one
// quorum naming all of them, one cluster id, and the replication defaults
// TrackOps' own topics use.
func checkKafkaQuorum(t *testing.T, c composeFile) {
	t.Helper()
	var brokers []string
	clusterIDs := map[string]bool{}
	nodeIDs := map[string]string{}
	for name, s := range c.Services {
		if !strings.HasPrefix(s.Image, "apache/kafka") {
			continue
		}
		e := s.Environment
		brokers = append(brokers, name+":9092")
		clusterIDs[e["CLUSTER_ID"]] = true
		nodeIDs[e["KAFKA_NODE_ID"]] = name
		if !strings.Contains(e["KAFKA_PROCESS_ROLES"], "broker") || !strings.Contains(e["KAFKA_PROCESS_ROLES"], "controller") {
			t.Errorf("%s: KAFKA_PROCESS_ROLES %q", name, e["KAFKA_PROCESS_ROLES"])
		}
		if e["KAFKA_ADVERTISED_LISTENERS"] != "PLAINTEXT://"+name+":9092" {
			t.Errorf("%s advertises %q", name, e["KAFKA_ADVERTISED_LISTENERS"])
		}
		if e["KAFKA_DEFAULT_REPLICATION_FACTOR"] != "3" || e["KAFKA_MIN_INSYNC_REPLICAS"] != "2" ||
			e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] != "3" || e["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] != "2" {
			t.Errorf("%s: replication defaults %v", name, e)
		}
		if s.Healthcheck == nil {
			t.Errorf("%s has no healthcheck", name)
		}
	}
	if len(brokers) != 3 || len(clusterIDs) != 1 || len(nodeIDs) != 3 {
		t.Fatalf("want three Kafka nodes of one cluster with distinct ids: brokers %v, cluster ids %v, node ids %v", brokers, clusterIDs, nodeIDs)
	}
	for id, name := range nodeIDs {
		for _, s := range c.Services {
			if strings.HasPrefix(s.Image, "apache/kafka") && !strings.Contains(s.Environment["KAFKA_CONTROLLER_QUORUM_VOTERS"], id+"@"+name+":9093") {
				t.Errorf("quorum voters %q miss %s@%s:9093", s.Environment["KAFKA_CONTROLLER_QUORUM_VOTERS"], id, name)
			}
		}
	}
	slices.Sort(brokers)
	for name, s := range c.Services {
		if s.Build == "" {
			continue
		}
		got := strings.Split(s.Environment["TRACKOPS_KAFKA_BROKERS"], ",")
		slices.Sort(got)
		if !slices.Equal(got, brokers) {
			t.Errorf("%s: TRACKOPS_KAFKA_BROKERS %v, want %v", name, got, brokers)
		}
	}
}

// checkObservability: Prometheus scrapes every TrackOps service under the
// job the shipped alerts expect and loads them; Grafana is provisioned with
// a data source and the shipped dashboard.
func checkObservability(t *testing.T, c composeFile, deployDir string) {
	t.Helper()
	mounts := func(service string) map[string]string { // container path -> repository path
		out := map[string]string{}
		for _, v := range c.Services[service].Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 {
				out[parts[1]] = filepath.Join(deployDir, parts[0])
			}
		}
		return out
	}
	prom := mounts("prometheus")
	var pc struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName     string `yaml:"job_name"`
			MetricsPath string `yaml:"metrics_path"`
			DNSSD       []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, prom["/etc/prometheus/prometheus.yml"], &pc)
	for _, rf := range pc.RuleFiles {
		if prom[rf] == "" {
			t.Errorf("prometheus loads %s, which is not mounted", rf)
		}
	}
	scraped := map[string]bool{}
	for _, sc := range pc.ScrapeConfigs {
		if sc.JobName != "trackops" || sc.MetricsPath != "/metrics" {
			continue
		}
		for _, d := range sc.DNSSD {
			for _, n := range d.Names {
				scraped[n] = d.Port == 8080
			}
		}
	}
	for name, s := range c.Services {
		if s.Build != "" && len(s.Command) > 0 && s.Command[0] == "run" && !scraped[name] {
			t.Errorf("prometheus job trackops does not scrape %s on :8080/metrics", name)
		}
	}
	alerts, err := os.ReadFile(prom["/etc/prometheus/alerts.yml"])
	if err != nil || !strings.Contains(string(alerts), `job="trackops"`) {
		t.Errorf("alerts.yml mounted for prometheus must be the shipped rules for job trackops: %v", err)
	}

	graf := mounts("grafana")
	prov := graf["/etc/grafana/provisioning"]
	var dash struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(prov, "dashboards", "trackops.yaml"), &dash)
	if len(dash.Providers) != 1 || graf[dash.Providers[0].Options.Path+"/trackops-dashboard.json"] == "" {
		t.Errorf("grafana's dashboard provider %+v does not point at the mounted dashboard (mounts %v)", dash.Providers, graf)
	}
	var ds struct {
		Datasources []struct {
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(prov, "datasources", "prometheus.yaml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || !strings.Contains(ds.Datasources[0].URL, "//prometheus:") {
		t.Errorf("grafana data sources %+v, want the compose file's prometheus", ds.Datasources)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestDockerfile: the image's data directory exists and belongs to the
// user it runs as, and its health check runs a real command.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	dataDir := regexp.MustCompile(`TRACKOPS_DATA_DIR=(\S+)`).FindStringSubmatch(df)
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(df)
	if dataDir == nil || user == nil {
		t.Fatalf("the Dockerfile must set TRACKOPS_DATA_DIR and a USER")
	}
	uid, _, _ := strings.Cut(user[1], ":")
	if uid == "root" || uid == "0" {
		t.Fatalf("the image runs as %s", user[1])
	}
	chown := regexp.MustCompile(`(?m)^COPY --from=\S+ --chown=(\S+) \S+ (\S+)$`).FindAllStringSubmatch(df, -1)
	owned := false
	for _, m := range chown {
		owner, _, _ := strings.Cut(m[1], ":")
		owned = owned || (m[2] == dataDir[1] && (owner == uid || (owner == "65532" && uid == "nonroot")))
	}
	if !owned {
		t.Errorf("TRACKOPS_DATA_DIR=%s is not created owned by the runtime user %s (COPY --chown)", dataDir[1], user[1])
	}
	hc := regexp.MustCompile(`(?m)^HEALTHCHECK .*CMD \["trackops", "([a-z]+)"`).FindStringSubmatch(df)
	if hc == nil || lookup(Commands(), hc[1]) == nil {
		t.Errorf("the HEALTHCHECK must run a trackops command (exec form: no shell in the image): %v", hc)
	}
	for _, port := range []string{"8080", "8083"} {
		if !strings.Contains(df, port) {
			t.Errorf("port %s is not exposed", port)
		}
	}
}

// TestKubernetesManifestsRunRealRoles: the roles and commands in
// deploy/k8s are the binary's (the module there checks the rest).
func TestKubernetesManifestsRunRealRoles(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy", "k8s", "*.yaml"))
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); err != nil {
				break
			}
			walkArgs(doc, func(args []string) {
				found++
				if lookup(Commands(), args[0]) == nil {
					t.Errorf("%s: %v is not a trackops command", f, args)
					return
				}
				if i := slices.Index(args, "--roles"); i >= 0 && i+1 < len(args) {
					if _, err := ParseRoles(args[i+1]); err != nil {
						t.Errorf("%s: %v", f, err)
					}
				}
			})
		}
	}
	if found < 3 {
		t.Fatalf("found %d container argument lists in deploy/k8s, want one per role Deployment", found)
	}
}

// walkArgs calls fn with every "args" list of strings in a decoded document.
func walkArgs(v any, fn func([]string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			if list, ok := child.([]any); ok && k == "args" && len(list) > 0 {
				args := make([]string, len(list))
				for i, a := range list {
					args[i] = fmt.Sprint(a)
				}
				fn(args)
				continue
			}
			walkArgs(child, fn)
		}
	case []any:
		for _, child := range x {
			walkArgs(child, fn)
		}
	}
}
