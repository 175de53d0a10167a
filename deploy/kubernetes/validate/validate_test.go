package validate

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
)

const manifest = "../hotpatch-daemonset.yaml"

// decodeStrict decodes every document of a multi-document YAML file into
// its typed API object. The serializer is strict: a field the type does
// not have, a field given twice, or a value of the wrong type is an error,
// which is what "kubectl apply --validate=strict" reports.
func decodeStrict(data []byte) ([]runtime.Object, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := appsv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	s := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	var objs []runtime.Object
	for i, doc := range splitYAML(data) {
		obj, gvk, err := s.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if gvk.Version == "" || gvk.Kind == "" {
			return nil, fmt.Errorf("document %d has no apiVersion or kind", i+1)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// splitYAML cuts a stream at "---" lines and drops documents that hold
// only comments.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		for _, l := range strings.Split(cur.String(), "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, bytes.Clone(cur.Bytes()))
				break
			}
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), " ") == "---" {
			flush()
			continue
		}
		cur.WriteString(sc.Text() + "\n")
	}
	flush()
	return docs
}

type objects struct {
	namespaces map[string]*corev1.Namespace
	configMaps map[string]*corev1.ConfigMap
	daemonSets []*appsv1.DaemonSet
}

func load(t *testing.T) objects {
	t.Helper()
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeStrict(data)
	if err != nil {
		t.Fatalf("%s: %v", manifest, err)
	}
	o := objects{namespaces: map[string]*corev1.Namespace{}, configMaps: map[string]*corev1.ConfigMap{}}
	for _, obj := range objs {
		switch v := obj.(type) {
		case *corev1.Namespace:
			o.namespaces[v.Name] = v
		case *corev1.ConfigMap:
			o.configMaps[v.Namespace+"/"+v.Name] = v
		case *appsv1.DaemonSet:
			o.daemonSets = append(o.daemonSets, v)
		default:
			t.Errorf("%s holds an unexpected %T", manifest, obj)
		}
	}
	if len(o.daemonSets) != 1 {
		t.Fatalf("%s holds %d DaemonSets, want 1", manifest, len(o.daemonSets))
	}
	return o
}

func TestManifestDecodesStrictly(t *testing.T) {
	load(t)
}

// TestStrictDecodingCatchesMistakes proves the check has teeth: the same
// manifest with a misspelt field, a field of the wrong type, or a
// duplicated key is refused.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, to string }{
		{"hostPID: true", "hostPid: true"},
		{"maxUnavailable: 1", "maxUnavailable: {}"},
		{"readOnlyRootFilesystem: true", "readOnlyRootFilesystem: true\n            readOnlyRootFilesystem: false"},
		{"memory: 512Mi", "memory: lots"},
	} {
		bad := bytes.Replace(data, []byte(c.from), []byte(c.to), 1)
		if bytes.Equal(bad, data) {
			t.Fatalf("%q is not in the manifest any more; update this test", c.from)
		}
		if _, err := decodeStrict(bad); err == nil {
			t.Errorf("replacing %q by %q still decodes", c.from, c.to)
		}
	}
}

// TestDaemonSetIsValid applies the rules the API server's validation
// applies to these objects (k8s.io/kubernetes/pkg/apis/{core,apps}/validation),
// for the fields the manifest uses: names, the selector, volumes and
// mounts, probes, security context.
func TestDaemonSetIsValid(t *testing.T) {
	o := load(t)
	ds := o.daemonSets[0]
	checkName := func(what, name string, f func(string) []string) {
		for _, msg := range f(name) {
			t.Errorf("%s %q: %s", what, name, msg)
		}
	}
	for name := range o.namespaces {
		checkName("namespace", name, validation.IsDNS1123Label)
	}
	for _, cm := range o.configMaps {
		checkName("configmap", cm.Name, validation.IsDNS1123Subdomain)
		if _, ok := o.namespaces[cm.Namespace]; !ok {
			t.Errorf("configmap %s is in namespace %q, which the manifest does not create", cm.Name, cm.Namespace)
		}
		for k := range cm.Data {
			checkName("configmap key", k, validation.IsConfigMapKey)
		}
	}
	checkName("daemonset", ds.Name, validation.IsDNS1123Subdomain)
	if _, ok := o.namespaces[ds.Namespace]; !ok {
		t.Errorf("the DaemonSet is in namespace %q, which the manifest does not create", ds.Namespace)
	}

	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("selector: %v (empty: %v)", err, sel == nil || sel.Empty())
	}
	if !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("selector %s does not match the template's labels %v", sel, ds.Spec.Template.Labels)
	}
	for k, v := range ds.Spec.Template.Labels {
		checkName("label key", k, validation.IsQualifiedName)
		checkName("label value", v, validation.IsValidLabelValue)
	}
	if p := ds.Spec.Template.Spec.RestartPolicy; p != "" && p != corev1.RestartPolicyAlways {
		t.Errorf("a DaemonSet's pods must restart Always, not %s", p)
	}

	spec := ds.Spec.Template.Spec
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		checkName("volume", v.Name, validation.IsDNS1123Label)
		if _, dup := volumes[v.Name]; dup {
			t.Errorf("volume %s is declared twice", v.Name)
		}
		volumes[v.Name] = v
		switch {
		case v.HostPath != nil:
			if !path.IsAbs(v.HostPath.Path) {
				t.Errorf("volume %s: hostPath %q is not absolute", v.Name, v.HostPath.Path)
			}
		case v.ConfigMap != nil:
			if _, ok := o.configMaps[ds.Namespace+"/"+v.ConfigMap.Name]; !ok {
				t.Errorf("volume %s names configmap %s, which the manifest does not define", v.Name, v.ConfigMap.Name)
			}
		default:
			t.Errorf("volume %s has a source this check does not know", v.Name)
		}
	}
	if len(spec.Containers) == 0 {
		t.Fatal("the pod has no container")
	}
	for _, c := range spec.Containers {
		checkName("container", c.Name, validation.IsDNS1123Label)
		if c.Image == "" {
			t.Errorf("container %s has no image", c.Name)
		}
		seen := map[string]bool{}
		for _, m := range c.VolumeMounts {
			v, ok := volumes[m.Name]
			if !ok {
				t.Errorf("container %s mounts volume %s, which is not declared", c.Name, m.Name)
			}
			if !path.IsAbs(m.MountPath) || seen[m.MountPath] {
				t.Errorf("container %s: mount path %q is relative or used twice", c.Name, m.MountPath)
			}
			seen[m.MountPath] = true
			if m.SubPath != "" && v.ConfigMap != nil {
				if cm := o.configMaps[ds.Namespace+"/"+v.ConfigMap.Name]; cm != nil {
					if _, ok := cm.Data[m.SubPath]; !ok {
						t.Errorf("container %s mounts key %q of configmap %s, which it lacks", c.Name, m.SubPath, cm.Name)
					}
				}
			}
		}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
			if p == nil {
				continue
			}
			n := 0
			for _, set := range []bool{p.Exec != nil, p.HTTPGet != nil, p.TCPSocket != nil, p.GRPC != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				t.Errorf("container %s: a probe must have exactly one handler, has %d", c.Name, n)
			}
		}
		if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil {
			// The API server refuses allowPrivilegeEscalation: false
			// together with privileged or CAP_SYS_ADMIN.
			if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation &&
				(slices.Contains(sc.Capabilities.Add, "SYS_ADMIN") || (sc.Privileged != nil && *sc.Privileged)) {
				t.Errorf("container %s: allowPrivilegeEscalation false with SYS_ADMIN or privileged is refused", c.Name)
			}
		}
	}
}

// TestDaemonSetFollowsTheHostSetup checks what makes the daemon work on a
// node and what keeps the DaemonSet in step with the systemd unit: the
// node's processes, the same capabilities, the store and socket on the
// node, and the policy file in the format the daemon reads.
func TestDaemonSetFollowsTheHostSetup(t *testing.T) {
	o := load(t)
	ds := o.daemonSets[0]
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID is off: the daemon would see only its own pod")
	}
	c := spec.Containers[0]
	args := strings.Join(append(append([]string{}, c.Command...), c.Args...), " ")
	if !strings.HasPrefix(args, "/usr/bin/hotpatch daemon") {
		t.Errorf("the container runs %q, not hotpatch daemon", args)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	hostPathOf := func(mountPath string) string {
		m, ok := mounts[mountPath]
		if !ok {
			return ""
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.HostPath != nil {
				return v.HostPath.Path
			}
		}
		return ""
	}
	if !strings.Contains(args, "--store=/var/lib/hotpatch/patches") || hostPathOf("/var/lib/hotpatch/patches") != "/var/lib/hotpatch/patches" {
		t.Errorf("the store is not the node's /var/lib/hotpatch/patches: %q", args)
	}
	// The socket and the patcher's lock files (/run/hotpatch/locks) must
	// be the node's, so that hotpatch run on the node talks to this
	// daemon and never changes a process at the same time as it.
	if !strings.Contains(args, "--socket=/run/hotpatch/hotpatch.sock") || hostPathOf("/run/hotpatch") != "/run/hotpatch" {
		t.Errorf("the socket is not in the node's /run/hotpatch: %q", args)
	}
	if m := mounts["/etc/hotpatch/config"]; m.SubPath != "config" || !m.ReadOnly {
		t.Errorf("/etc/hotpatch/config is not mounted read-only from the config key: %+v", m)
	}

	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("the container has no security context with capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("the container is privileged; it needs four capabilities, not all of them")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("the container does not drop ALL capabilities before adding its own")
	}
	want := unitCapabilities(t)
	var got []string
	for _, c := range sc.Capabilities.Add {
		got = append(got, "CAP_"+string(c))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the DaemonSet adds %v, the systemd unit grants %v: keep them the same", got, want)
	}
	if sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		t.Error("without an Unconfined AppArmor profile the runtime's default forbids ptrace of the node's processes")
	}

	cm := o.configMaps[ds.Namespace+"/hotpatch-config"]
	if cm == nil {
		t.Fatal("no hotpatch-config ConfigMap")
	}
	keys := map[string]string{}
	for _, l := range strings.Split(cm.Data["config"], "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf("config line %q is not key = value", l)
			continue
		}
		keys[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if keys["require_signature"] != "true" && keys["require_signature"] != "false" {
		t.Errorf("require_signature = %q, want true or false", keys["require_signature"])
	}
	if keys["trusted_keys"] != "/etc/hotpatch/trusted-keys" || mounts["/etc/hotpatch/trusted-keys"].Name == "" {
		t.Errorf("trusted_keys = %q is not where the key ConfigMap is mounted", keys["trusted_keys"])
	}
	for k := range keys {
		if k != "require_signature" && k != "trusted_keys" {
			t.Errorf("config key %q is not one the daemon reads", k)
		}
	}
}

// unitCapabilities reads the capability bounding set of the systemd unit.
func unitCapabilities(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../../systemd/hotpatch.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapabilityBoundingSet="); ok {
			caps := strings.Fields(v)
			slices.Sort(caps)
			return caps
		}
	}
	t.Fatal("the systemd unit has no CapabilityBoundingSet=")
	return nil
}
