// Package helm_test renders the webhookd chart with helm for its defaults and
// every value set in webhookd/ci, decodes each manifest strictly into the
// Kubernetes (and Prometheus Operator) API types, and checks what an SRE
// relies on: the settings the binary reads are reachable from values and
// load in serve mode, secrets arrive as mounted files or secret references,
// pods are locked down, and the alerts query metrics webhookd exports.
package helm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/afftok/webhookd/config"
)

const chart = "webhookd"

// Settings serve mode never reads: the chart leaves them out on purpose.
var devOnly = map[string]string{
	"WEBHOOKD_DATA_DIR":            "dev mode's data directory (serve keeps nothing on disk)",
	"WEBHOOKD_DEV_KAFKA_ADDR":      "dev mode's in-process broker",
	"WEBHOOKD_CHDB_LIBRARY":        "dev mode's embedded ClickHouse",
	"WEBHOOKD_CHDB_PURGE_ABOVE_MB": "dev mode's embedded ClickHouse",
	"WEBHOOKD_CHDB_NICE":           "dev mode's embedded ClickHouse",
}

// Settings the chart sets ahead of the binary: the secure-Kafka and metrics
// work add them to config.Config. Tolerated only while config.Config lacks them; once
// it has them they are checked like every other setting.
var pendingEnv = map[string]bool{
	"WEBHOOKD_QUEUE_METRICS_INTERVAL": true, // the metrics work
	"WEBHOOKD_KAFKA_TLS_CERT_FILE":    true,
	"WEBHOOKD_KAFKA_TLS_KEY_FILE":     true,
	"WEBHOOKD_KAFKA_PASSWORD_FILE":    true,
}

// Metrics the alerts use ahead of metrics/metrics.go (the metrics work adds
// them); tolerated only while metrics.go lacks them.
var pendingMetrics = map[string]bool{"webhookd_consumer_lag": true, "webhookd_dlq_items": true}

// helmBinary finds helm: $HELM (the Makefile sets it), the one `make helm`
// built into .cache, then PATH. Without it
// the test skips on a developer's machine and fails in CI.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		if _, err := os.Stat(h); err == nil {
			return h
		}
	}
	if hs, _ := filepath.Glob("../../.cache/helm/*/helm"); len(hs) > 0 {
		return hs[len(hs)-1] // what `make helm` built
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	if os.Getenv("CI") != "" {
		t.Fatal("helm not found ($HELM or PATH) and CI is set: run `make helm` (make test does) to build the pinned helm")
	}
	t.Skip("helm not found ($HELM or PATH): run `make helm` to build the pinned helm into .cache, or use `make test`")
	return ""
}

// A rendered value set: its objects by kind.
type rendering struct {
	name        string
	deployments []appsv1.Deployment
	secrets     []corev1.Secret
	configMaps  []corev1.ConfigMap
	services    []corev1.Service
	pdbs        []policyv1.PodDisruptionBudget
	hpas        []autoscalingv2.HorizontalPodAutoscaler
	netpols     []networkingv1.NetworkPolicy
	monitors    []monitoringv1.ServiceMonitor
	rules       []monitoringv1.PrometheusRule
}

// valueSets is the defaults ("default") and each ci/*.yaml.
func valueSets(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(chart, "ci", "*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("value sets in %s/ci: %v %v", chart, files, err)
	}
	return append([]string{"default"}, files...)
}

func render(helm, values string) (*rendering, error) {
	args := []string{"template", "webhookd", chart, "--namespace", "webhooks"}
	if values != "default" {
		args = append(args, "-f", values)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	r := &rendering{name: values}
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(out), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		if err := r.decode([]byte(doc)); err != nil {
			return nil, fmt.Errorf("%s: manifest %d: %v\n%s", values, i, err, doc)
		}
	}
	return r, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// decode unmarshals one manifest strictly (unknown or duplicate fields are
// errors) into the API type its apiVersion and kind name.
func (r *rendering) decode(doc []byte) error {
	var tm struct{ APIVersion, Kind string }
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	strict := func(into any) error { return yaml.UnmarshalStrict(doc, into) }
	var err error
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		var o appsv1.Deployment
		err = strict(&o)
		r.deployments = append(r.deployments, o)
	case "v1 Secret":
		var o corev1.Secret
		err = strict(&o)
		r.secrets = append(r.secrets, o)
	case "v1 ConfigMap":
		var o corev1.ConfigMap
		err = strict(&o)
		r.configMaps = append(r.configMaps, o)
	case "v1 Service":
		var o corev1.Service
		err = strict(&o)
		r.services = append(r.services, o)
	case "policy/v1 PodDisruptionBudget":
		var o policyv1.PodDisruptionBudget
		err = strict(&o)
		r.pdbs = append(r.pdbs, o)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		var o autoscalingv2.HorizontalPodAutoscaler
		err = strict(&o)
		r.hpas = append(r.hpas, o)
	case "networking.k8s.io/v1 NetworkPolicy":
		var o networkingv1.NetworkPolicy
		err = strict(&o)
		r.netpols = append(r.netpols, o)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		var o monitoringv1.ServiceMonitor
		err = strict(&o)
		r.monitors = append(r.monitors, o)
	case "monitoring.coreos.com/v1 PrometheusRule":
		var o monitoringv1.PrometheusRule
		err = strict(&o)
		r.rules = append(r.rules, o)
	default:
		return fmt.Errorf("unexpected %s %s: add it to decode", tm.APIVersion, tm.Kind)
	}
	return err
}

var rendered struct {
	once sync.Once
	rs   []*rendering
	err  error
}

// renderAll renders every value set, once for all tests, in parallel (helm
// is the slow part).
func renderAll(t *testing.T) []*rendering {
	t.Helper()
	helm := helmBinary(t)
	sets := valueSets(t)
	rendered.once.Do(func() {
		rs := make([]*rendering, len(sets))
		errs := make([]error, len(sets))
		var wg sync.WaitGroup
		for i, v := range sets {
			wg.Go(func() { rs[i], errs[i] = render(helm, v) })
		}
		wg.Wait()
		rendered.rs, rendered.err = rs, errors.Join(errs...)
	})
	if rendered.err != nil {
		t.Fatal(rendered.err)
	}
	return rendered.rs
}

// configEnv is every environment variable config.Config reads.
func configEnv() map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	t := reflect.TypeFor[config.Config]()
	for i := range t.NumField() {
		if name := t.Field(i).Tag.Get("env"); name != "" && name != "-" {
			m[name] = t.Field(i)
		}
	}
	return m
}

// stageFiles puts what the mounted Secrets would hold under a temporary
// directory and points the file settings there, so loading the environment
// may read them: a tokens file, a public key, a CA, client certificate and
// key, a password, a template secrets directory.
func stageFiles(t *testing.T, env map[string]string) {
	t.Helper()
	cert, key, pub := testPKI(t)
	root := t.TempDir()
	for name, path := range env {
		if path == "" || !(strings.HasSuffix(name, "_FILE") || strings.HasSuffix(name, "_DIR")) {
			continue
		}
		staged := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(staged), 0o700); err != nil {
			t.Fatal(err)
		}
		var content []byte
		switch {
		case strings.HasSuffix(name, "_DIR"):
			if err := os.MkdirAll(staged, 0o700); err != nil {
				t.Fatal(err)
			}
			env[name] = staged
			continue
		case name == "WEBHOOKD_ADMIN_TOKENS_FILE":
			content = []byte("from-a-secret-0123456789abcdef admin\n")
		case name == "WEBHOOKD_ADMIN_JWT_PUBLIC_KEY_FILE":
			content = pub
		case name == "WEBHOOKD_KAFKA_TLS_CA_FILE", name == "WEBHOOKD_KAFKA_TLS_CERT_FILE":
			content = cert
		case name == "WEBHOOKD_KAFKA_TLS_KEY_FILE":
			content = key
		default:
			content = []byte("from-a-secret-0123456789abcdef\n")
		}
		if err := os.WriteFile(staged, content, 0o600); err != nil {
			t.Fatal(err)
		}
		env[name] = staged
	}
}

var pki struct {
	once           sync.Once
	cert, key, pub []byte
	err            error
}

// testPKI: a self-signed P-256 certificate (used as CA and client
// certificate), its key, and its public key, in PEM.
func testPKI(t *testing.T) (cert, key, pub []byte) {
	t.Helper()
	pki.once.Do(func() {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			pki.err = err
			return
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "webhookd"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			pki.err = err
			return
		}
		kd, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			pki.err = err
			return
		}
		pd, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			pki.err = err
			return
		}
		pki.cert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		pki.key = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
		pki.pub = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pd})
	})
	if pki.err != nil {
		t.Fatal(pki.err)
	}
	return pki.cert, pki.key, pki.pub
}

// fromSecret stands for a value a Secret key supplies: one of the right shape.
func fromSecret(name string) string {
	switch name {
	case "WEBHOOKD_SECRETS_KEY":
		return "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes, base64
	case "WEBHOOKD_KAFKA_BROKERS":
		return "kafka-0.kafka:9092,kafka-1.kafka:9092"
	case "WEBHOOKD_CLICKHOUSE_ADDR":
		return "clickhouse:9000"
	}
	return "from-a-secret-0123456789abcdef0123456789"
}

// Every value set renders, decodes strictly, and yields Deployments whose
// environment loads in serve mode, with secrets only as references or
// mounted files, and pods locked down.
func TestChartRendersValidLockedDownDeployments(t *testing.T) {
	rs := renderAll(t)
	known := configEnv()
	for _, r := range rs {
		t.Run(filepath.Base(r.name), func(t *testing.T) {
			if len(r.deployments) == 0 {
				t.Fatal("no Deployment")
			}
			for _, d := range r.deployments {
				checkDeployment(t, r, &d, known)
			}
			checkPDBsAndHPAs(t, r)
			checkServices(t, r)
			checkDashboards(t, r)
		})
	}
}

func checkDeployment(t *testing.T, r *rendering, d *appsv1.Deployment, known map[string]reflect.StructField) {
	t.Helper()
	pod := &d.Spec.Template
	sel, err := metav1LabelSelector(d)
	if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("%s: selector %v does not match the pod labels %v (%v)", d.Name, d.Spec.Selector, pod.Labels, err)
	}
	ps := pod.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod securityContext %+v: want runAsNonRoot and seccomp RuntimeDefault", d.Name, ps)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted; webhookd never calls the Kubernetes API", d.Name)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", d.Name, len(pod.Spec.Containers))
	}
	c := &pod.Spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: container securityContext %+v: want read-only root, no privilege escalation, ALL capabilities dropped, seccomp RuntimeDefault", d.Name, sc)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: liveness probe %+v, want GET /healthz", d.Name, c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: readiness probe %+v, want GET /readyz", d.Name, c.ReadinessProbe)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources %+v: want cpu and memory requests and a memory limit", d.Name, c.Resources)
	}
	if !reflect.DeepEqual(c.Args, []string{"serve"}) {
		t.Errorf("%s: args %v", d.Name, c.Args)
	}

	// The environment: every WEBHOOKD_ name is one the binary reads, secrets
	// come as references to Secret keys, files are mounted from Secrets.
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("%s: %s set twice", d.Name, e.Name)
		}
		_, read := known[e.Name]
		if strings.HasPrefix(e.Name, "WEBHOOKD_") && !read && !pendingEnv[e.Name] {
			t.Errorf("%s: sets %s, which webhookd does not read", d.Name, e.Name)
		}
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			checkSecretRef(t, r, d.Name, e)
			env[e.Name] = fromSecret(e.Name)
		case e.ValueFrom != nil:
			t.Errorf("%s: %s from %+v", d.Name, e.Name, e.ValueFrom)
		default:
			env[e.Name] = e.Value
			if isSecretish(e.Name) && e.Value != "" {
				t.Errorf("%s: %s is a literal value; secrets come from Secret references", d.Name, e.Name)
			}
		}
		if (strings.HasSuffix(e.Name, "_FILE") || strings.HasSuffix(e.Name, "_DIR")) && e.Value != "" {
			checkMountedFromSecret(t, d, c, e.Name, e.Value)
		}
	}
	stageFiles(t, env)
	cfg, err := config.Load(config.ModeServe, func(k string) string { return env[k] })
	if err != nil {
		t.Errorf("%s: its environment does not load in serve mode: %v", d.Name, err)
		return
	}
	if cfg.AdminAddr != fmt.Sprintf(":%d", c.Ports[0].ContainerPort) || c.LivenessProbe.HTTPGet.Port.String() != "http" || c.Ports[0].Name != "http" {
		t.Errorf("%s: admin address %s, port %+v: the probes and Services must reach what webhookd listens on", d.Name, cfg.AdminAddr, c.Ports)
	}
	if env["WEBHOOKD_KAFKA_TLS_CA_FILE"] != "" && !cfg.KafkaTLS {
		t.Errorf("%s: a Kafka CA without WEBHOOKD_KAFKA_TLS", d.Name)
	}
	if cfg.KafkaSASLMechanism != "" && (env["WEBHOOKD_KAFKA_USER"] == "" || env["WEBHOOKD_KAFKA_PASSWORD"] == "" && env["WEBHOOKD_KAFKA_PASSWORD_FILE"] == "") {
		t.Errorf("%s: SASL %s without user and password", d.Name, cfg.KafkaSASLMechanism)
	}
	comp := pod.Labels["app.kubernetes.io/component"]
	if want := comp; (comp == "all" && cfg.Roles == "") || (comp != "all" && cfg.Roles != want) {
		t.Errorf("%s: component %s runs roles %q", d.Name, comp, cfg.Roles)
	}
}

func metav1LabelSelector(d *appsv1.Deployment) (labels.Selector, error) {
	if d.Spec.Selector == nil {
		return nil, errors.New("no selector")
	}
	return labels.SelectorFromSet(d.Spec.Selector.MatchLabels), nil
}

// isSecretish: a setting whose value is a credential (files and
// directories name where credentials are, which is fine).
func isSecretish(name string) bool {
	if strings.HasSuffix(name, "_FILE") || strings.HasSuffix(name, "_DIR") {
		return false
	}
	for _, s := range []string{"PASSWORD", "TOKEN", "SECRET", "_KEY", "_USER"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// checkSecretRef: a reference to a Secret the chart renders names a key it
// has, unless optional.
func checkSecretRef(t *testing.T, r *rendering, dep string, e corev1.EnvVar) {
	t.Helper()
	ref := e.ValueFrom.SecretKeyRef
	if ref.Name == "" || ref.Key == "" {
		t.Errorf("%s: %s refers to secret %q key %q", dep, e.Name, ref.Name, ref.Key)
	}
	for _, s := range r.secrets {
		if s.Name != ref.Name {
			continue
		}
		if _, ok := s.StringData[ref.Key]; !ok && (ref.Optional == nil || !*ref.Optional) {
			t.Errorf("%s: %s needs key %s, which the chart's Secret %s lacks", dep, e.Name, ref.Key, s.Name)
		}
	}
}

// checkMountedFromSecret: a file setting points into a read-only mount of a
// Secret volume (and, with items, at one of its paths).
func checkMountedFromSecret(t *testing.T, d *appsv1.Deployment, c *corev1.Container, name, path string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		if !m.ReadOnly || m.SubPath != "" {
			t.Errorf("%s: %s is under mount %+v: want read-only, no subPath (so Secret updates arrive)", d.Name, name, m)
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret == nil {
				t.Errorf("%s: %s is on volume %s, not a Secret", d.Name, name, v.Name)
				return
			}
			if len(v.Secret.Items) > 0 && rel != "." {
				found := false
				for _, it := range v.Secret.Items {
					found = found || it.Path == rel
				}
				if !found {
					t.Errorf("%s: %s=%s, but Secret volume %s projects %+v", d.Name, name, path, v.Name, v.Secret.Items)
				}
			}
			return
		}
		t.Errorf("%s: mount %s has no volume", d.Name, m.Name)
		return
	}
	t.Errorf("%s: %s=%s is not under any volume mount", d.Name, name, path)
}

func checkPDBsAndHPAs(t *testing.T, r *rendering) {
	t.Helper()
	deps := map[string]*appsv1.Deployment{}
	for i := range r.deployments {
		deps[r.deployments[i].Name] = &r.deployments[i]
	}
	scaled := map[string]bool{}
	for _, h := range r.hpas {
		d := deps[h.Spec.ScaleTargetRef.Name]
		if d == nil || h.Spec.ScaleTargetRef.Kind != "Deployment" {
			t.Errorf("HPA %s scales %+v, not a rendered Deployment", h.Name, h.Spec.ScaleTargetRef)
			continue
		}
		scaled[d.Name] = true
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas although HPA %s owns them", d.Name, h.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas || len(h.Spec.Metrics) == 0 {
			t.Errorf("HPA %s: %+v", h.Name, h.Spec)
		}
	}
	for _, d := range r.deployments {
		if !scaled[d.Name] && d.Spec.Replicas == nil {
			t.Errorf("Deployment %s has no replicas and no HPA", d.Name)
		}
		covered := 0
		for _, p := range r.pdbs {
			s := labels.SelectorFromSet(p.Spec.Selector.MatchLabels)
			if s.Matches(labels.Set(d.Spec.Template.Labels)) {
				covered++
			}
		}
		if covered != 1 {
			t.Errorf("Deployment %s is covered by %d PodDisruptionBudgets, want 1", d.Name, covered)
		}
	}
}

// checkServices: every Service selects pods; the admin one pods running the admin role.
func checkServices(t *testing.T, r *rendering) {
	t.Helper()
	for _, s := range r.services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		n := 0
		for _, d := range r.deployments {
			if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			n++
			if s.Labels["webhookd.afftok.com/metrics"] == "" {
				roles := envOf(&d)["WEBHOOKD_ROLES"]
				if roles != "all" && !strings.Contains(roles, "admin") {
					t.Errorf("admin Service %s selects %s (roles %s)", s.Name, d.Name, roles)
				}
			}
		}
		if n == 0 {
			t.Errorf("Service %s selects no pods", s.Name)
		}
	}
	for _, m := range r.monitors {
		sel := labels.SelectorFromSet(m.Spec.Selector.MatchLabels)
		found := false
		for _, s := range r.services {
			found = found || sel.Matches(labels.Set(s.Labels))
		}
		if !found {
			t.Errorf("ServiceMonitor %s selects no Service", m.Name)
		}
	}
}

func envOf(d *appsv1.Deployment) map[string]string {
	m := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		m[e.Name] = e.Value
	}
	return m
}

// checkDashboards: the labelled ConfigMap carries every dashboard of the chart, as JSON.
func checkDashboards(t *testing.T, r *rendering) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(chart, "dashboards", "*.json"))
	for _, cm := range r.configMaps {
		if cm.Labels["grafana_dashboard"] == "" {
			continue
		}
		size := 0
		for _, v := range cm.Data {
			size += len(v)
		}
		if size > 900<<10 {
			t.Errorf("ConfigMap %s holds %d bytes; the API server refuses objects over 1 MiB", cm.Name, size)
		}
		for _, f := range files {
			raw, ok := cm.Data[filepath.Base(f)]
			var dash struct{ Title, UID string }
			if !ok || json.Unmarshal([]byte(raw), &dash) != nil || dash.Title == "" {
				t.Errorf("ConfigMap %s: dashboard %s missing or not JSON", cm.Name, filepath.Base(f))
			}
		}
		return
	}
	t.Error("no ConfigMap labelled grafana_dashboard")
}

// Every setting the binary reads (config.Config's env tags) is set by the
// chart from values: in at least one value set, and rendered differently in
// two of them (or only in some), so a value, not the template, decides it.
func TestEverySettingIsReachableFromValues(t *testing.T) {
	rs := renderAll(t)
	// name → distinct renderings (value or secret reference), and in how many sets it appears.
	seen := map[string]map[string]bool{}
	present := map[string]int{}
	for _, r := range rs {
		inSet := map[string]bool{}
		for _, d := range r.deployments {
			for _, e := range d.Spec.Template.Spec.Containers[0].Env {
				v := e.Value
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					v = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
				}
				if seen[e.Name] == nil {
					seen[e.Name] = map[string]bool{}
				}
				seen[e.Name][v] = true
				inSet[e.Name] = true
			}
		}
		for n := range inSet {
			present[n]++
		}
	}
	var missing, fixed []string
	for name := range configEnv() {
		if devOnly[name] != "" {
			continue
		}
		switch {
		case seen[name] == nil:
			missing = append(missing, name)
		case len(seen[name]) < 2 && present[name] == len(rs):
			fixed = append(fixed, name)
		}
	}
	sort.Strings(missing)
	sort.Strings(fixed)
	if len(missing) > 0 {
		t.Errorf("settings the chart never sets (map them in templates/_helpers.tpl and values.yaml, and set them in a ci/*.yaml): %v", missing)
	}
	if len(fixed) > 0 {
		t.Errorf("settings no value changes (rendered the same in every value set; change them in a ci/*.yaml): %v", fixed)
	}
	// Reached through values, not extraEnv.
	for _, f := range valueSets(t)[1:] {
		raw, _ := os.ReadFile(f)
		var v struct {
			ExtraEnv []corev1.EnvVar `json:"extraEnv"`
		}
		if err := yaml.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		for _, e := range v.ExtraEnv {
			if strings.HasPrefix(e.Name, "WEBHOOKD_") {
				t.Errorf("%s sets %s through extraEnv; map it to a value instead", f, e.Name)
			}
		}
	}
	for name := range pendingEnv {
		if _, ok := configEnv()[name]; ok {
			continue
		}
		if seen[name] == nil {
			t.Errorf("%s (pending in config) is never set", name)
		}
		t.Logf("%s: set by the chart, not yet read by config.Config", name)
	}
}

// exportedMetrics: the metric names metrics/metrics.go registers.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile("../../metrics/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, m := range regexp.MustCompile(`Name:\s*"(webhookd_[a-z0-9_]+)"`).FindAllStringSubmatch(string(src), -1) {
		exported[m[1]] = true
	}
	return exported
}

// checkMetricNames: every webhookd_ metric a query names is exported (a
// histogram's _bucket, _sum and _count series included).
func checkMetricNames(t *testing.T, exported map[string]bool, where, expr string) {
	t.Helper()
	for _, m := range regexp.MustCompile(`\bwebhookd_[a-z0-9_]+`).FindAllString(expr, -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
		switch {
		case exported[m] || exported[base]:
		case pendingMetrics[m]:
			t.Logf("%s: %s is not in metrics/metrics.go yet (the metrics work adds it)", where, m)
		default:
			t.Errorf("%s queries %s, which webhookd does not export", where, m)
		}
	}
}

// The Prometheus dashboards query metrics webhookd exports.
func TestPrometheusDashboardsQueryExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	files, _ := filepath.Glob(filepath.Join(chart, "dashboards", "*.json"))
	n := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(raw, &dash); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range dash.Panels {
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					n++
					checkMetricNames(t, exported, filepath.Base(f)+" panel "+p.Title, tg.Expr)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no dashboard queries Prometheus")
	}
}

// The alerts: the four the issue asks for, each on metrics webhookd exports.
func TestPrometheusRuleAlertsOnExportedMetrics(t *testing.T) {
	rs := renderAll(t)
	exported := exportedMetrics(t)
	var rules []monitoringv1.Rule
	for _, r := range rs {
		for _, pr := range r.rules {
			for _, g := range pr.Spec.Groups {
				rules = append(rules, g.Rules...)
			}
		}
	}
	if len(rules) == 0 {
		t.Fatal("no value set renders a PrometheusRule")
	}
	alerts := map[string]bool{}
	for _, rule := range rules {
		alerts[rule.Alert] = true
		checkMetricNames(t, exported, "alert "+rule.Alert, rule.Expr.String())
		if rule.Alert != "" && rule.Labels["severity"] == "" {
			t.Errorf("alert %s has no severity", rule.Alert)
		}
	}
	for _, want := range []string{"WebhookdConsumerLagGrowing", "WebhookdDLQGrowing", "WebhookdSuccessRateFalling", "WebhookdPipelinesAutoDisabled"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// The NetworkPolicy admits the HTTP port from the configured peers only.
func TestNetworkPolicySelectsThePods(t *testing.T) {
	rs := renderAll(t)
	n := 0
	for _, r := range rs {
		for _, np := range r.netpols {
			n++
			sel := labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels)
			for _, d := range r.deployments {
				if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
					t.Errorf("%s: NetworkPolicy %s does not select %s", r.name, np.Name, d.Name)
				}
			}
			if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port.String() != "http" || len(np.Spec.Ingress[0].From) == 0 {
				t.Errorf("%s: NetworkPolicy ingress %+v", r.name, np.Spec.Ingress)
			}
		}
	}
	if n == 0 {
		t.Fatal("no value set renders a NetworkPolicy")
	}
}

// values.schema.json refuses mistakes before anything reaches a cluster,
// naming the value.
func TestValuesSchemaRefusesMistakes(t *testing.T) {
	helm := helmBinary(t)
	for _, c := range []struct{ set, want string }{
		{"kafka.sasl.mechanism=SCRAM", "/kafka/sasl/mechanism"},
		{"kafka.sessionTimeout=10 seconds", "/kafka/sessionTimeout"},
		{"topology=split", "/topology"},
		{"delivery.retryDelayScale=2", "/delivery/retryDelayScale"},
		{"kafka.tls.enable=true", "enable"},
		{"credentials.adminToken=short", "/credentials/adminToken"},
		{"autoscaling.roles={dispatcher,cook}", "/autoscaling/roles/1"},
	} {
		out, err := exec.Command(helm, "template", "webhookd", chart, "--set", c.set).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("--set %s: err %v, output %s; want a schema error naming %s", c.set, err, out, c.want)
		}
	}
}
