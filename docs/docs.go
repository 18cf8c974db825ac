// Package docs embeds the documents that the server serves: the OpenAPI
// description of the REST API, openapi.yaml, served at GET /v1/openapi.yaml.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
