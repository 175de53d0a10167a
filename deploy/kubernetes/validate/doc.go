// Package validate checks deploy/kubernetes/hotpatch-daemonset.yaml
// offline against the Kubernetes API types. It is a module of its own so
// that hotpatch itself does not depend on k8s.io/api; scripts/test runs its
// tests.
package validate
