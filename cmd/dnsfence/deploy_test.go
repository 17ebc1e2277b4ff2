package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/dnsfence/dnsfence/configs"
)

// The deployment files (Dockerfile, configs/container, configs/compose, configs/kubernetes) are
// checked against each other and against this binary's config parser, so a renamed port, a moved
// config path or an invalid embedded config fails here rather than in someone's cluster.

const repoRoot = "../.."

// kubeObject is the part of a Kubernetes manifest these tests read.
type kubeObject struct {
	file       string // relative to the repository root, for messages
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		// Deployment
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		// Service (its selector, a bare map, lands in Selector too)
		Ports []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
		// ServiceMonitor
		JobLabel  string `yaml:"jobLabel"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

// labelSelector is a Deployment's, PDB's or ServiceMonitor's selector; a Service's selector is a
// bare map, which lands in the same field through UnmarshalYAML.
type labelSelector map[string]string

func (s *labelSelector) UnmarshalYAML(n *yaml.Node) error {
	var full struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	if err := n.Decode(&full); err == nil && full.MatchLabels != nil {
		*s = full.MatchLabels
		return nil
	}
	var bare map[string]string
	if err := n.Decode(&bare); err != nil {
		return err
	}
	*s = bare
	return nil
}

type podSpec struct {
	SecurityContext struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
	Containers []kubeContainer `yaml:"containers"`
	Volumes    []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type kubeContainer struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	ReadinessProbe *kubeProbe `yaml:"readinessProbe"`
	LivenessProbe  *kubeProbe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type kubeProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a container port name
	} `yaml:"httpGet"`
}

// yamlDocs decodes every document of the YAML file at rel (relative to the repository root).
func yamlDocs(t *testing.T, rel string) []*yaml.Node {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	var docs []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		docs = append(docs, &n)
	}
}

// yamlFiles lists the .yaml and .yml files under dir (relative to the repository root).
func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(p); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			rel, _ := filepath.Rel(repoRoot, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no YAML files under %s", dir)
	}
	return out
}

// kubeObjects reads every manifest under configs/kubernetes (kustomization files apart).
func kubeObjects(t *testing.T) []*kubeObject {
	t.Helper()
	var objs []*kubeObject
	for _, f := range yamlFiles(t, "configs/kubernetes") {
		if path.Base(f) == "kustomization.yaml" {
			continue
		}
		for i, doc := range yamlDocs(t, f) {
			o := &kubeObject{file: f}
			if err := doc.Decode(o); err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s: document %d: apiVersion, kind and metadata.name are required", f, i)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

// only returns the one object of kind, failing unless there is exactly one.
func only(t *testing.T, objs []*kubeObject, kind string) *kubeObject {
	t.Helper()
	var found []*kubeObject
	for _, o := range objs {
		if o.Kind == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("configs/kubernetes: want exactly one %s, found %d", kind, len(found))
	}
	return found[0]
}

// selects reports whether selector (non-empty) matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func protocol(p string) string {
	if p == "" {
		return "TCP" // the Kubernetes default
	}
	return strings.ToUpper(p)
}

// containerPort resolves ref (a number or a port name) among c's ports with protocol proto ("" for
// any), returning the port number or 0.
func (c *kubeContainer) containerPort(ref, proto string) int {
	for _, p := range c.Ports {
		if (p.Name == ref || strconv.Itoa(p.ContainerPort) == ref) && (proto == "" || protocol(p.Protocol) == proto) {
			return p.ContainerPort
		}
	}
	return 0
}

// hasPort reports whether c declares port with protocol proto.
func (c *kubeContainer) hasPort(port int, proto string) bool {
	return c.containerPort(strconv.Itoa(port), proto) == port
}

// flagValue returns the value of -name or --name (as "-name value" or "-name=value") in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimLeft(a, "-")
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// checkedConfig parses and validates a shipped dnsfence config, as the binary would at start.
func checkedConfig(t *testing.T, data []byte, source string) *configs.Config {
	t.Helper()
	cfg, err := configs.Parse(data, source)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s does not validate:\n%v", source, err)
	}
	return cfg
}

// dnsPorts are the ports of the config's plain DNS listeners (UDP and TCP).
func dnsPorts(t *testing.T, cfg *configs.Config) []int {
	t.Helper()
	var out []int
	for _, l := range cfg.Listen {
		ls, err := configs.ParseListen(l)
		if err != nil {
			t.Fatalf("%s: listen %q: %v", cfg.Source(), l, err)
		}
		out = append(out, int(ls.Addr.Port()))
	}
	return out
}

func httpPort(t *testing.T, cfg *configs.Config) int {
	t.Helper()
	_, p, err := net.SplitHostPort(cfg.HTTP.Listen)
	n, _ := strconv.Atoi(p)
	if err != nil || n == 0 {
		t.Fatalf("%s: http.listen %q: want host:port (the probes and Prometheus need it)", cfg.Source(), cfg.HTTP.Listen)
	}
	return n
}

// configCheck runs `dnsfence -config file -config.check`: the lists it names must load too.
func configCheck(t *testing.T, file, source string) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-config", file, "-config.check"}, &out, &out); err != nil {
		t.Errorf("%s: dnsfence -config.check: %v\n%s", source, err, out.String())
	}
}

// TestDeployKubernetes: the manifests under configs/kubernetes reference each other correctly,
// and the config in the ConfigMap is valid, loads its lists, and listens where the pod expects.
func TestDeployKubernetes(t *testing.T) {
	objs := kubeObjects(t)
	dep := only(t, objs, "Deployment")
	svc := only(t, objs, "Service")
	pdb := only(t, objs, "PodDisruptionBudget")
	cm := only(t, objs, "ConfigMap")
	sm := only(t, objs, "ServiceMonitor")

	pod := dep.Spec.Template
	podLabels := pod.Metadata.Labels
	if !selects(dep.Spec.Selector, podLabels) {
		t.Errorf("%s: spec.selector.matchLabels %v does not match the pod template's labels %v", dep.file, dep.Spec.Selector, podLabels)
	}
	if !selects(svc.Spec.Selector, podLabels) {
		t.Errorf("%s: spec.selector %v does not match the pod labels %v of %s", svc.file, svc.Spec.Selector, podLabels, dep.file)
	}
	if !selects(pdb.Spec.Selector, podLabels) {
		t.Errorf("%s: spec.selector.matchLabels %v does not match the pod labels %v of %s", pdb.file, pdb.Spec.Selector, podLabels, dep.file)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
		t.Errorf("%s: spec.replicas: want 2 or more, so DNS survives a pod going away", dep.file)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%s: spec.template.spec.containers: want the one dnsfence container, got %d", dep.file, len(pod.Spec.Containers))
	}
	c := &pod.Spec.Containers[0]
	field := func(f string) string { return fmt.Sprintf("spec.template.spec.containers[0].%s", f) }

	// Hardening the README promises.
	if (c.SecurityContext.RunAsNonRoot == nil || !*c.SecurityContext.RunAsNonRoot) &&
		(pod.Spec.SecurityContext.RunAsNonRoot == nil || !*pod.Spec.SecurityContext.RunAsNonRoot) {
		t.Errorf("%s: runAsNonRoot: true is missing (pod or container securityContext)", dep.file)
	}
	if p := c.SecurityContext.ReadOnlyRootFilesystem; p == nil || !*p {
		t.Errorf("%s: %s: want true", dep.file, field("securityContext.readOnlyRootFilesystem"))
	}
	if p := c.SecurityContext.AllowPrivilegeEscalation; p == nil || *p {
		t.Errorf("%s: %s: want false", dep.file, field("securityContext.allowPrivilegeEscalation"))
	}
	if !slices.Equal(c.SecurityContext.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("%s: %s: want [ALL], got %v", dep.file, field("securityContext.capabilities.drop"), c.SecurityContext.Capabilities.Drop)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" {
			t.Errorf("%s: %s: missing", dep.file, field("resources.requests."+r))
		}
	}
	if c.Resources.Limits["memory"] == "" {
		t.Errorf("%s: %s: missing", dep.file, field("resources.limits.memory"))
	}

	// Probes on the HTTP listener.
	for _, p := range []struct {
		name, path string
		probe      *kubeProbe
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: %s.httpGet: missing", dep.file, field(p.name))
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s: %s.httpGet.path: %q, want %q", dep.file, field(p.name), p.probe.HTTPGet.Path, p.path)
		}
		if port := c.containerPort(p.probe.HTTPGet.Port, "TCP"); port != 9253 {
			t.Errorf("%s: %s.httpGet.port %q: want the TCP container port 9253, resolves to %d", dep.file, field(p.name), p.probe.HTTPGet.Port, port)
		}
	}

	// Service ports land on container ports with the same protocol; DNS on 53 over UDP and TCP.
	dns53 := map[string]bool{}
	for i, p := range svc.Spec.Ports {
		target := p.TargetPort
		if target == "" {
			target = strconv.Itoa(p.Port)
		}
		if c.containerPort(target, protocol(p.Protocol)) == 0 {
			t.Errorf("%s: spec.ports[%d].targetPort %q: no %s container port of that name or number in %s",
				svc.file, i, target, protocol(p.Protocol), dep.file)
		}
		if p.Port == 53 {
			dns53[protocol(p.Protocol)] = true
		}
	}
	if !dns53["UDP"] || !dns53["TCP"] {
		t.Errorf("%s: spec.ports: want port 53 over both UDP and TCP, have %v", svc.file, dns53)
	}

	// The ConfigMap is mounted as a directory (subPath mounts never see updates), and the config
	// the container is told to read is a key in it.
	var mountPath string
	for i, m := range c.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name {
				if m.SubPath != "" {
					t.Errorf("%s: %s.subPath: a subPath mount of ConfigMap %s never updates, so edits would not reload; mount the directory",
						dep.file, field(fmt.Sprintf("volumeMounts[%d]", i)), cm.Metadata.Name)
				}
				mountPath = path.Clean(m.MountPath)
			}
		}
	}
	if mountPath == "" {
		t.Fatalf("%s: no volumeMount of a volume from ConfigMap %q (%s)", dep.file, cm.Metadata.Name, cm.file)
	}
	configPath := flagValue(append(slices.Clone(c.Command), c.Args...), "config")
	if configPath == "" {
		t.Fatalf("%s: %s: no -config flag", dep.file, field("args"))
	}
	key, ok := strings.CutPrefix(configPath, mountPath+"/")
	if !ok || strings.Contains(key, "/") || cm.Data[key] == "" {
		t.Fatalf("%s: %s: -config %s is not a key of ConfigMap %s (%s) mounted at %s",
			dep.file, field("args"), configPath, cm.Metadata.Name, cm.file, mountPath)
	}
	source := fmt.Sprintf("%s: data[%s]", cm.file, key)
	cfg := checkedConfig(t, []byte(cm.Data[key]), source)

	for _, p := range dnsPorts(t, cfg) {
		if !c.hasPort(p, "UDP") || !c.hasPort(p, "TCP") {
			t.Errorf("%s: listen port %d is not a UDP and TCP container port in %s", source, p, dep.file)
		}
	}
	hp := httpPort(t, cfg)
	if c.containerPort("metrics", "TCP") != hp {
		t.Errorf("%s: http.listen port %d differs from the container port named metrics in %s (%d)",
			source, hp, dep.file, c.containerPort("metrics", "TCP"))
	}
	ann := pod.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(hp) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("%s: spec.template.metadata.annotations: want prometheus.io/scrape \"true\", port %q, path /metrics; got %v", dep.file, strconv.Itoa(hp), ann)
	}

	// Every file the config names is a key of the same ConfigMap, so it is there and reloads.
	var files []string
	for _, l := range cfg.Blocklists {
		if l.Path != "" {
			files = append(files, l.Path)
		}
	}
	files = append(files, cfg.HostsFiles...)
	for _, f := range files {
		k, ok := strings.CutPrefix(path.Clean(f), mountPath+"/")
		if !ok || strings.Contains(k, "/") {
			t.Errorf("%s: %s is outside the ConfigMap mount %s", source, f, mountPath)
		} else if _, ok := cm.Data[k]; !ok {
			t.Errorf("%s: %s: ConfigMap %s has no key %q", source, f, cm.Metadata.Name, k)
		}
	}

	// Materialise the ConfigMap the way the kubelet does (files are symlinks through ..data) at a
	// temporary mount path, and let the binary check the config and load its lists from there.
	dir := t.TempDir()
	version := filepath.Join(dir, "..2026_01_01_00_00_00.000000001")
	must(t, os.Mkdir(version, 0o755))
	for k, v := range cm.Data {
		v = strings.ReplaceAll(v, mountPath+"/", dir+"/")
		must(t, os.WriteFile(filepath.Join(version, k), []byte(v), 0o644))
		must(t, os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)))
	}
	must(t, os.Symlink(filepath.Base(version), filepath.Join(dir, "..data")))
	configCheck(t, filepath.Join(dir, key), source)

	// ServiceMonitor: selects the Service, scrapes its metrics port and sets job="dnsfence",
	// which the alert rules and the dashboard expect.
	if !selects(sm.Spec.Selector, svc.Metadata.Labels) {
		t.Errorf("%s: spec.selector.matchLabels %v does not match the labels %v of %s", sm.file, sm.Spec.Selector, svc.Metadata.Labels, svc.file)
	}
	if job := svc.Metadata.Labels[sm.Spec.JobLabel]; job != "dnsfence" {
		t.Errorf("%s: spec.jobLabel %q gives job %q from %s, want \"dnsfence\"", sm.file, sm.Spec.JobLabel, job, svc.file)
	}
	for i, e := range sm.Spec.Endpoints {
		found := false
		for _, p := range svc.Spec.Ports {
			if p.Name == e.Port && c.containerPort(p.TargetPort, protocol(p.Protocol)) == hp {
				found = true
			}
		}
		if !found || e.Path != "/metrics" {
			t.Errorf("%s: spec.endpoints[%d]: port %q path %q: want a port of %s that reaches the metrics port %d, path /metrics",
				sm.file, i, e.Port, e.Path, svc.file, hp)
		}
	}

	// The pod runs the image's binary.
	df := readDockerfile(t)
	if len(c.Command) > 0 && c.Command[0] != df.entrypoint[0] {
		t.Errorf("%s: %s[0] %q is not the image's binary %q (Dockerfile ENTRYPOINT)", dep.file, field("command"), c.Command[0], df.entrypoint[0])
	}
}

// TestDeployKustomization: each kustomization.yaml under configs/kubernetes lists every manifest
// beside it, and everything it lists exists.
func TestDeployKustomization(t *testing.T) {
	manifests := map[string][]string{} // directory → manifests in it
	for _, f := range yamlFiles(t, "configs/kubernetes") {
		if path.Base(f) != "kustomization.yaml" {
			manifests[path.Dir(f)] = append(manifests[path.Dir(f)], path.Base(f))
		}
	}
	for dir, files := range manifests {
		k := path.Join(dir, "kustomization.yaml")
		if _, err := os.Stat(filepath.Join(repoRoot, k)); err != nil {
			t.Errorf("%s: missing, so %v are in no kustomization", k, files)
			continue
		}
		var kust struct {
			Resources []string `yaml:"resources"`
		}
		if err := yamlDocs(t, k)[0].Decode(&kust); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		for _, f := range files {
			if !slices.Contains(kust.Resources, f) {
				t.Errorf("%s: resources does not list %s", k, f)
			}
		}
		for i, r := range kust.Resources {
			p := filepath.Join(repoRoot, dir, r)
			st, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: resources[%d] %q: %v", k, i, r, err)
			} else if st.IsDir() {
				if _, err := os.Stat(filepath.Join(p, "kustomization.yaml")); err != nil {
					t.Errorf("%s: resources[%d] %q: a directory without kustomization.yaml", k, i, r)
				}
				if base := path.Clean(path.Join(dir, r)); base == dir || strings.HasPrefix(dir, base+"/") {
					t.Errorf("%s: resources[%d] %q: kustomize refuses a base that contains the kustomization (cycle)", k, i, r)
				}
			}
		}
	}
}

// dockerfile is what the tests read from the final stage of the Dockerfile.
type dockerfile struct {
	entrypoint []string
	expose     map[string]bool // "1053/udp"
	copies     map[string]string
	user       string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile{}
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(data), " ")
	for _, line := range strings.Split(text, "\n") {
		ins, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(ins) {
		case "FROM": // only the final stage counts
			df = dockerfile{expose: map[string]bool{}, copies: map[string]string{}}
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				df.expose[strings.ToLower(p)] = true
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &df.entrypoint); err != nil || len(df.entrypoint) == 0 {
				t.Fatalf("Dockerfile: ENTRYPOINT %s: want the exec (JSON) form, the image has no shell", rest)
			}
		case "COPY":
			if f := strings.Fields(rest); len(f) == 2 {
				df.copies[f[1]] = f[0]
			}
		case "USER":
			df.user = rest
		}
	}
	if df.entrypoint == nil {
		t.Fatal("Dockerfile: no ENTRYPOINT in the final stage")
	}
	return df
}

// TestDeployContainer: the image's config is the one in configs/container, it is valid, and its
// ports are the ones the Dockerfile exposes; the image runs as a non-root user.
func TestDeployContainer(t *testing.T) {
	df := readDockerfile(t)
	const rel = "configs/container/dnsfence.yaml"
	configPath := flagValue(df.entrypoint[1:], "config")
	if df.copies[configPath] != rel {
		t.Errorf("Dockerfile: ENTRYPOINT reads -config %q, but the final stage copies %s to %q", configPath, rel, configPath)
	}
	uid, _, _ := strings.Cut(df.user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("Dockerfile: USER %q: want a numeric non-root user (runAsNonRoot cannot check a name)", df.user)
	}
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	cfg := checkedConfig(t, data, rel)
	configCheck(t, filepath.Join(repoRoot, rel), rel)
	for _, p := range dnsPorts(t, cfg) {
		for _, proto := range []string{"udp", "tcp"} {
			if !df.expose[fmt.Sprintf("%d/%s", p, proto)] {
				t.Errorf("%s: listen port %d: Dockerfile does not EXPOSE %d/%s", rel, p, p, proto)
			}
		}
	}
	if hp := httpPort(t, cfg); !df.expose[fmt.Sprintf("%d/tcp", hp)] {
		t.Errorf("%s: http.listen port %d: Dockerfile does not EXPOSE it", rel, hp)
	}
	host, _, _ := net.SplitHostPort(cfg.HTTP.Listen)
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		t.Errorf("%s: http.listen %q: Prometheus in another container cannot reach it; want 0.0.0.0", rel, cfg.HTTP.Listen)
	}
}

// TestDeployCompose: every file compose.yaml mounts exists, the dnsfence service finds its config
// through its mounts and publishes ports the config listens on, and Prometheus and Grafana point
// at the services and paths compose sets up.
func TestDeployCompose(t *testing.T) {
	const dir = "configs/compose"
	for _, f := range yamlFiles(t, dir) {
		yamlDocs(t, f) // each must at least parse
	}
	var compose struct {
		Services map[string]struct {
			Ports   []string `yaml:"ports"`
			Volumes []string `yaml:"volumes"`
			Command []string `yaml:"command"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	cf := dir + "/compose.yaml"
	if err := yamlDocs(t, cf)[0].Decode(&compose); err != nil {
		t.Fatalf("%s: %v", cf, err)
	}
	// mounts maps a container path to the repository file or directory behind it, per service.
	mounts := map[string]map[string]string{}
	for name, s := range compose.Services {
		mounts[name] = map[string]string{}
		for i, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("%s: services.%s.volumes[%d] %q: want SOURCE:TARGET", cf, name, i, v)
				continue
			}
			src, dst := parts[0], parts[1]
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := compose.Volumes[src]; !ok {
					t.Errorf("%s: services.%s.volumes[%d]: named volume %q is not declared under volumes", cf, name, i, src)
				}
				continue
			}
			rel := path.Join(dir, src)
			if _, err := os.Stat(filepath.Join(repoRoot, rel)); err != nil {
				t.Errorf("%s: services.%s.volumes[%d]: %s does not exist in the repository", cf, name, i, rel)
			}
			mounts[name][dst] = rel
		}
	}
	// resolve finds the repository file behind container path p of service svc.
	resolve := func(svc, p string) string {
		for dst, src := range mounts[svc] {
			if p == dst {
				return src
			}
			if rest, ok := strings.CutPrefix(p, dst+"/"); ok {
				return path.Join(src, rest)
			}
		}
		return ""
	}
	exists := func(rel string) bool {
		st, err := os.Stat(filepath.Join(repoRoot, rel))
		return rel != "" && err == nil && !st.IsDir()
	}

	// dnsfence: the image's -config path, through the mounts, is a valid config whose ports
	// are the published container ports.
	df := readDockerfile(t)
	configPath := flagValue(df.entrypoint[1:], "config")
	rel := resolve("dnsfence", configPath)
	if rel == "" {
		rel = df.copies[configPath] // not mounted: the copy in the image
	}
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatalf("%s: services.dnsfence: the image's config %s is not there (%v)", cf, configPath, err)
	}
	cfg := checkedConfig(t, data, rel)
	published := map[string]bool{}
	for _, p := range compose.Services["dnsfence"].Ports {
		f := strings.Split(p, ":")
		published[f[len(f)-1]] = true // the container side, e.g. 1053/udp
	}
	for _, p := range dnsPorts(t, cfg) {
		for _, proto := range []string{"udp", "tcp"} {
			if !published[fmt.Sprintf("%d/%s", p, proto)] {
				t.Errorf("%s: services.dnsfence.ports: %s listens on %d/%s, which is not published", cf, rel, p, proto)
			}
		}
	}

	// Prometheus: its config and rules are mounted, it scrapes job dnsfence at the service's
	// metrics port.
	promConfig := flagValue(compose.Services["prometheus"].Command, "config.file")
	promRel := resolve("prometheus", promConfig)
	if !exists(promRel) {
		t.Fatalf("%s: services.prometheus: --config.file %q is not a mounted repository file", cf, promConfig)
	}
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yamlDocs(t, promRel)[0].Decode(&prom); err != nil {
		t.Fatalf("%s: %v", promRel, err)
	}
	for i, r := range prom.RuleFiles {
		if !path.IsAbs(r) {
			r = path.Join(path.Dir(promConfig), r)
		}
		if !exists(resolve("prometheus", r)) {
			t.Errorf("%s: rule_files[%d] %q is not a mounted repository file in services.prometheus", promRel, i, r)
		}
	}
	want := fmt.Sprintf("dnsfence:%d", httpPort(t, cfg))
	scraped := false
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			scraped = scraped || sc.JobName == "dnsfence" && slices.Contains(st.Targets, want)
		}
	}
	if !scraped {
		t.Errorf("%s: scrape_configs: no job \"dnsfence\" with target %s (service dnsfence, http.listen of %s)", promRel, want, rel)
	}

	// Grafana: provisioning is mounted, the data source points at the prometheus service, the
	// dashboard provider at the mounted dashboard.
	prov := resolve("grafana", "/etc/grafana/provisioning")
	if prov == "" {
		t.Fatalf("%s: services.grafana: nothing mounted at /etc/grafana/provisioning", cf)
	}
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	dsFile := prov + "/datasources/prometheus.yaml"
	if err := yamlDocs(t, dsFile)[0].Decode(&ds); err != nil {
		t.Fatalf("%s: %v", dsFile, err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].UID != "prometheus" || ds.Datasources[0].Type != "prometheus" ||
		ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("%s: datasources: want one of type prometheus, uid prometheus, url http://prometheus:9090 (the compose service); got %+v", dsFile, ds.Datasources)
	}
	var dash struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	dashFile := prov + "/dashboards/dnsfence.yaml"
	if err := yamlDocs(t, dashFile)[0].Decode(&dash); err != nil {
		t.Fatalf("%s: %v", dashFile, err)
	}
	if len(dash.Providers) != 1 || !exists(resolve("grafana", dash.Providers[0].Options.Path+"/dnsfence.json")) {
		t.Errorf("%s: providers[0].options.path: want the directory where services.grafana mounts configs/grafana/dnsfence.json", dashFile)
	}
}
