// Package k8s_test checks the Kubernetes manifests of TrackOps without a
// cluster: every document decodes strictly (unknown fields refused) into
// its k8s.io/api type, and the shape TrackOps needs is there — probes,
// resources, a disruption budget per role, the API's autoscaler, network
// policies, two cdc replicas. It lives in a module of its own so that the
// k8s.io dependencies stay out of TrackOps' module graph. The TRACKOPS_*
// variables and roles used here are checked against the binary by
// internal/app/deployfiles_test.go in the main module.
package k8s_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use; decoded strictly like the rest.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels"`
}

// newObject returns the typed object for a document's apiVersion and kind.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, true
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	}
	return nil, false
}

// decodeStrict turns YAML into JSON and decodes it into v, refusing
// unknown fields and trailing data.
func decodeStrict(doc []byte, v any) error {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// manifests decodes every resource the kustomization lists.
type manifests struct {
	kust        kustomization
	deployments map[string]*appsv1.Deployment
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	policies    []*networkingv1.NetworkPolicy
	configMaps  map[string]*corev1.ConfigMap
	accounts    map[string]bool
	namespaces  map[string]bool
}

func load(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{deployments: map[string]*appsv1.Deployment{}, configMaps: map[string]*corev1.ConfigMap{},
		accounts: map[string]bool{}, namespaces: map[string]bool{}}
	raw, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(raw, &m.kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if m.kust.Kind != "Kustomization" || m.kust.Namespace == "" {
		t.Fatalf("kustomization.yaml: kind %q namespace %q", m.kust.Kind, m.kust.Namespace)
	}
	// Every manifest in the directory is a listed resource, and back.
	files, _ := filepath.Glob("*.yaml")
	var onDisk []string
	for _, f := range files {
		if f != "kustomization.yaml" {
			onDisk = append(onDisk, f)
		}
	}
	listed := slices.Clone(m.kust.Resources)
	sort.Strings(onDisk)
	sort.Strings(listed)
	if !slices.Equal(onDisk, listed) {
		t.Fatalf("kustomization resources %v, files %v: they must match", listed, onDisk)
	}
	for _, f := range m.kust.Resources {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSeparator.Split(string(raw), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			obj, ok := newObject(tm.APIVersion, tm.Kind)
			if !ok {
				t.Fatalf("%s #%d: no check for %s %s; add it to newObject", f, i, tm.APIVersion, tm.Kind)
			}
			if err := decodeStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s #%d (%s): %v", f, i, tm.Kind, err)
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments[o.Name] = o
			case *corev1.Service:
				m.services = append(m.services, o)
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas = append(m.hpas, o)
			case *networkingv1.NetworkPolicy:
				m.policies = append(m.policies, o)
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.ServiceAccount:
				m.accounts[o.Name] = true
			case *corev1.Namespace:
				m.namespaces[o.Name] = true
			}
		}
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	if len(m.deployments) == 0 {
		t.Fatal("no Deployments")
	}
	if !m.namespaces[m.kust.Namespace] {
		t.Errorf("the kustomization's namespace %s is not created", m.kust.Namespace)
	}
}

// A strict decode must be able to fail: a misspelt field is refused.
func TestStrictDecodeRefusesUnknownFields(t *testing.T) {
	bad := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if err := decodeStrict(bad, &appsv1.Deployment{}); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("misspelt field: %v, want it refused", err)
	}
}

func TestEveryRoleIsDeployedWithProbesAndResources(t *testing.T) {
	m := load(t)
	roles := map[string]bool{}
	for name, d := range m.deployments {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not match its pods' labels %v", name, d.Spec.Selector, d.Spec.Template.Labels)
		}
		pod := d.Spec.Template.Spec
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: pods must run as non-root", name)
		}
		if sa := pod.ServiceAccountName; sa != "" && !m.accounts[sa] {
			t.Errorf("%s: service account %s is not defined", name, sa)
		}
		if len(pod.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", name, len(pod.Containers))
		}
		c := pod.Containers[0]
		if len(c.Args) != 3 || c.Args[0] != "run" || c.Args[1] != "--roles" {
			t.Errorf("%s: args %v, want [run --roles ROLES]", name, c.Args)
		} else {
			for _, r := range strings.Split(c.Args[2], ",") {
				roles[r] = true
			}
		}
		checkProbe(t, name+" liveness", c, c.LivenessProbe, "/health/live")
		checkProbe(t, name+" readiness", c, c.ReadinessProbe, "/health/ready")
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: CPU and memory requests are required, have %v", name, c.Resources.Requests)
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil && m.configMaps[ef.ConfigMapRef.Name] == nil {
				t.Errorf("%s: config map %s is not defined", name, ef.ConfigMapRef.Name)
			}
		}
		for _, vm := range c.VolumeMounts {
			if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name }) {
				t.Errorf("%s: mounts undefined volume %s", name, vm.Name)
			}
		}
		// Every role has a disruption budget that selects its pods.
		if !slices.ContainsFunc(m.pdbs, func(p *policyv1.PodDisruptionBudget) bool { return selects(p.Spec.Selector, d) }) {
			t.Errorf("%s: no PodDisruptionBudget selects its pods", name)
		}
		// And a network policy.
		if !slices.ContainsFunc(m.policies, func(p *networkingv1.NetworkPolicy) bool { return selects(&p.Spec.PodSelector, d) }) {
			t.Errorf("%s: no NetworkPolicy selects its pods", name)
		}
	}
	for _, r := range []string{"orders", "inventory", "relay", "cdc", "console"} {
		if !roles[r] {
			t.Errorf("role %s is deployed nowhere", r)
		}
	}
	for _, s := range m.services {
		found := false
		for _, d := range m.deployments {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				found = true
				for _, p := range s.Spec.Ports {
					if p.TargetPort.StrVal != "" && !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports,
						func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal }) {
						t.Errorf("service %s: target port %s is not a port of %s", s.Name, p.TargetPort.StrVal, d.Name)
					}
				}
			}
		}
		if !found {
			t.Errorf("service %s selects no Deployment's pods", s.Name)
		}
	}
}

func checkProbe(t *testing.T, what string, c corev1.Container, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: an HTTP probe on %s is required", what, path)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s: probes %s, want %s", what, p.HTTPGet.Path, path)
	}
	port := p.HTTPGet.Port
	ok := slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
		return (port.StrVal != "" && cp.Name == port.StrVal) || (port.StrVal == "" && cp.ContainerPort == port.IntVal)
	})
	if !ok {
		t.Errorf("%s: port %s is not a container port", what, port.String())
	}
}

func selects(sel *metav1.LabelSelector, d *appsv1.Deployment) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(labels.Set(d.Spec.Template.Labels))
}

func TestAPIAutoscalesAndCDCHasAStandby(t *testing.T) {
	m := load(t)
	var api *appsv1.Deployment
	for _, d := range m.deployments {
		if strings.Contains(d.Spec.Template.Spec.Containers[0].Args[2], "orders") {
			api = d
		}
	}
	if api == nil {
		t.Fatal("no Deployment runs the orders role (the API)")
	}
	scaled := false
	for _, h := range m.hpas {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == api.Name {
			scaled = true
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas <= *h.Spec.MinReplicas {
				t.Errorf("autoscaler %s: min %v max %d; want at least 2 and room to grow", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
			}
		}
	}
	if !scaled {
		t.Errorf("no HorizontalPodAutoscaler scales %s", api.Name)
	}
	for _, d := range m.deployments {
		if d.Spec.Template.Spec.Containers[0].Args[2] == "cdc" {
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
				t.Errorf("%s: %v replicas, want 2 (one active, one standby)", d.Name, d.Spec.Replicas)
			}
			return
		}
	}
	t.Error("no Deployment runs the cdc role alone")
}

func TestConfigSelectsTheCDCStrategyAndARealCluster(t *testing.T) {
	m := load(t)
	cm := m.configMaps["trackops-config"]
	if cm == nil {
		t.Fatal("no trackops-config ConfigMap")
	}
	if cm.Data["TRACKOPS_EVENT_STRATEGY"] != "cdc" {
		t.Errorf("TRACKOPS_EVENT_STRATEGY = %q, want cdc (the cdc Deployment runs the connector)", cm.Data["TRACKOPS_EVENT_STRATEGY"])
	}
	if cm.Data["TRACKOPS_KAFKA_BROKERS"] == "" {
		t.Error("TRACKOPS_KAFKA_BROKERS is empty: every pod would start its own embedded broker")
	}
	if cm.Data["TRACKOPS_KAFKA_REPLICATION_FACTOR"] != "3" || cm.Data["TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS"] != "2" {
		t.Errorf("replication %q/%q, want 3/2", cm.Data["TRACKOPS_KAFKA_REPLICATION_FACTOR"], cm.Data["TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS"])
	}
}
