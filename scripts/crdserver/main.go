// Command crdserver runs upstream k8s.io/apiextensions-apiserver standalone,
// as a real Kubernetes API for CustomResourceDefinitions in the project's tests.
//
// Upstream's own main leaves /apis discovery and the OpenAPI v2 document to
// kube-apiserver, which is not here; without them kubectl cannot map kinds to
// resources, `kubectl apply` fails to download the schema, and `kubectl explain`
// has nothing to read. This main only turns both on and otherwise runs the
// upstream server unchanged. Built by build.sh in GOPATH mode from Debian's
// golang-*-dev packages.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/component-base/cli"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	cmd := &cobra.Command{
		Use:   "crdserver",
		Short: "apiextensions-apiserver with discovery and OpenAPI enabled (test server)",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return run(c.Context(), o)
		},
	}
	cmd.SetContext(ctx)
	o.AddFlags(cmd.Flags())
	os.Exit(cli.Run(cmd))
}

func run(ctx context.Context, o *options.CustomResourceDefinitionsServerOptions) error {
	config, err := o.Config()
	if err != nil {
		return err
	}
	// Config() sets only OpenAPIV3Config; kubectl apply/explain still fetch /openapi/v2.
	defs := openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions)
	namer := openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme)
	config.GenericConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(defs, namer)
	config.GenericConfig.OpenAPIConfig.Info.Title = "crdserver"
	config.GenericConfig.OpenAPIV3Config.Info.Title = "crdserver"

	completed := config.Complete()
	// Complete() turns discovery off because kube-apiserver normally serves /apis.
	completed.GenericConfig.EnableDiscovery = true

	server, err := completed.New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}
