package deploy_test

import (
	"net"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/vidx/vidx/app"
)

// TestHTTPAPIExposed checks that the query stage serves the HTTP API on
// its container port and Service, and that no other stage claims it.
func TestHTTPAPIExposed(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.name, func(t *testing.T) {
			b := build(t, ov.dir)
			cfg, _ := loadConfig(t, b)
			_, port, err := net.SplitHostPort(cfg.HTTP.Addr)
			if err != nil {
				t.Fatalf("http.addr %q: the query stage must serve the API: %v", cfg.HTTP.Addr, err)
			}
			if cfg.HTTP.AuthToken != "" {
				t.Error("http.auth_token is in the ConfigMap: put it in the vidx-http Secret")
			}
			for _, stage := range app.AllStages {
				d := b.deployments["vidx-"+stage]
				if d == nil {
					t.Fatalf("no Deployment vidx-%s", stage)
				}
				c := container(d.Spec.Template.Spec.Containers, "vidx")
				p := containerPort(c, port)
				if stage != app.StageQuery {
					if p != nil {
						t.Errorf("vidx-%s exposes the HTTP API port %s; only the query stage serves it", stage, port)
					}
					continue
				}
				if p == nil {
					t.Fatalf("vidx-query does not expose the HTTP API port %s", port)
				}
				token := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "VIDX_HTTP_AUTH_TOKEN" })
				if token < 0 || c.Env[token].ValueFrom == nil || c.Env[token].ValueFrom.SecretKeyRef == nil {
					t.Error("vidx-query does not take VIDX_HTTP_AUTH_TOKEN from a Secret")
				}
				s := b.services["vidx-query"]
				if s == nil || !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool {
					return strconv.Itoa(int(sp.Port)) == port && samePort(sp.TargetPort, p)
				}) {
					t.Errorf("Service vidx-query does not expose the HTTP API port %s", port)
				}
			}
		})
	}
}
