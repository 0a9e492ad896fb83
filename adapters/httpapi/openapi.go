package httpapi

import (
	"github.com/gin-gonic/gin"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// access says who may call a route.
type access int

const (
	public   access = iota // anyone
	anyUser                // any authenticated principal
	roleList               // the roles in op.roles
)

// param documents a path or query parameter.
type param struct {
	Name, In, Desc, Type string
	Required             bool
}

// op is one documented route. The same table registers the gin handler and
// generates the OpenAPI document, so the two cannot drift apart.
type op struct {
	method, path string // gin pattern, e.g. /api/users/:id
	summary, tag string
	access       access
	roles        []string
	query        []param
	req          any    // request body DTO (zero value) or nil
	form         bool   // also accepts application/x-www-form-urlencoded
	resp         any    // success body DTO or nil
	status       int    // success status
	raw          string // media type of a non-JSON success body
	handler      gin.HandlerFunc
}

var ginParam = regexp.MustCompile(`[:*]([A-Za-z_]+)`)

func openAPIPath(p string) string { return ginParam.ReplaceAllString(p, "{$1}") }

type schemaSet struct {
	defs map[string]any
}

var timeType = reflect.TypeOf(time.Time{})

// schemaOf returns the JSON schema of t, registering named structs in components.
func (s *schemaSet) schemaOf(t reflect.Type) map[string]any {
	if t == nil {
		return map[string]any{}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Name() == "RawMessage" {
			return map[string]any{}
		}
		return map[string]any{"type": "array", "items": s.schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": s.schemaOf(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		name := t.Name()
		if name == "" {
			return s.structSchema(t)
		}
		if _, ok := s.defs[name]; !ok {
			s.defs[name] = map[string]any{} // break cycles
			s.defs[name] = s.structSchema(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func (s *schemaSet) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		ps := s.schemaOf(f.Type)
		if d := f.Tag.Get("doc"); d != "" {
			ps = withDesc(ps, d)
		}
		props[name] = ps
		if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
			required = append(required, name)
		}
	}
	out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		sort.Strings(required)
		out["required"] = required
	}
	return out
}

func withDesc(s map[string]any, d string) map[string]any {
	if _, ok := s["$ref"]; ok {
		return map[string]any{"allOf": []any{s}, "description": d}
	}
	out := make(map[string]any, len(s)+1)
	for k, v := range s {
		out[k] = v
	}
	out["description"] = d
	return out
}

// buildOpenAPI renders the OpenAPI 3.1 document for ops.
func buildOpenAPI(ops []op, version string) map[string]any {
	s := &schemaSet{defs: map[string]any{}}
	errSchema := s.schemaOf(reflect.TypeOf(errorBody{}))
	paths := map[string]any{}
	for _, o := range ops {
		p := openAPIPath(o.path)
		item, _ := paths[p].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[p] = item
		}
		operation := map[string]any{
			"summary":     o.summary,
			"operationId": strings.ToLower(o.method) + strings.NewReplacer("/", "_", "{", "", "}", "", "-", "_", ".", "_").Replace(p),
			"tags":        []string{o.tag},
		}
		var params []any
		for _, m := range ginParam.FindAllStringSubmatch(o.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range o.query {
			typ := q.Type
			if typ == "" {
				typ = "string"
			}
			params = append(params, map[string]any{"name": q.Name, "in": q.In, "required": q.Required,
				"description": q.Desc, "schema": map[string]any{"type": typ}})
		}
		if len(params) > 0 {
			operation["parameters"] = params
		}
		if o.req != nil {
			content := map[string]any{"application/json": map[string]any{"schema": s.schemaOf(reflect.TypeOf(o.req))}}
			if o.form {
				content["application/x-www-form-urlencoded"] = map[string]any{"schema": s.schemaOf(reflect.TypeOf(o.req))}
			}
			operation["requestBody"] = map[string]any{"required": true, "content": content}
		}
		responses := map[string]any{}
		status := o.status
		if status == 0 {
			status = 200
		}
		success := map[string]any{"description": "success"}
		if o.resp != nil {
			success["content"] = map[string]any{"application/json": map[string]any{"schema": s.schemaOf(reflect.TypeOf(o.resp))}}
		} else if o.raw != "" {
			success["content"] = map[string]any{o.raw: map[string]any{"schema": map[string]any{"type": "string"}}}
		}
		responses[strconv.Itoa(status)] = success
		errResp := map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": errSchema}}}
		responses["default"] = errResp
		operation["responses"] = responses
		switch o.access {
		case public:
			operation["security"] = []any{}
		case anyUser:
			operation["x-roles"] = []string{"any authenticated user"}
		case roleList:
			operation["x-roles"] = o.roles
		}
		item[strings.ToLower(o.method)] = operation
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "VelociCompanion API",
			"version":     version,
			"description": "Multi-tenant threat-hunting companion for Velociraptor. Errors are {\"error\":{\"code\",\"message\"}}.",
		},
		"paths": paths,
		"components": map[string]any{
			"schemas": s.defs,
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
			},
		},
		"security": []any{map[string]any{"bearer": []any{}}},
	}
}
