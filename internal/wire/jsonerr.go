package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// JSONError explains why a JSON document (what, e.g. "request body" or
// "payload") did not decode into target, in the document's terms rather
// than Go's: which field holds which JSON type where another was expected,
// or where the syntax broke. target is what the document was decoded into
// (it lets the text tell an array's element from the field itself); it may
// be nil.
//
//	field "seq" must be an integer, got a string
//	field "members" must be an array of strings, got a number in it
//	request body must be a JSON object, got an array
//	payload is not valid JSON: invalid character 'x' looking for beginning of value (at byte 8)
func JSONError(what string, target any, err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		got := jsonValueName(te.Value)
		if te.Field == "" {
			want := jsonTypeName(te.Type)
			if want == "an object" {
				want = "a JSON object"
			}
			return fmt.Sprintf("%s must be %s, got %s", what, want, got)
		}
		if ft := fieldType(target, te.Field); ft != nil && (ft.Kind() == reflect.Slice || ft.Kind() == reflect.Array) && ft.Elem() == te.Type {
			return fmt.Sprintf("field %q must be an array of %s, got %s in it", te.Field, plural(jsonTypeName(te.Type)), got)
		}
		return fmt.Sprintf("field %q must be %s, got %s", te.Field, jsonTypeName(te.Type), got)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s is not valid JSON: %s (at byte %d)", what, se.Error(), se.Offset)
	}
	return what + " is not valid JSON"
}

// fieldError names field in a type error of a value decoded on its own (the
// decoder names only the fields of a struct it decodes).
func fieldError(field string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field == "" {
		te.Field = field
	}
	return err
}

// fieldType returns the Go type of the field at path (JSON names joined
// with dots) in target, or nil.
func fieldType(target any, path string) reflect.Type {
	if target == nil {
		return nil
	}
	t := reflect.TypeOf(target)
	for _, name := range strings.Split(path, ".") {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		var found reflect.Type
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag == name || (tag == "" && strings.EqualFold(f.Name, name)) {
				found = f.Type
				break
			}
		}
		if found == nil {
			return nil
		}
		t = found
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// jsonTypeName names the JSON type a Go type decodes from.
func jsonTypeName(t reflect.Type) string {
	if t == nil {
		return "another JSON type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another JSON type"
}

// plural turns "a string" into "strings", "an integer" into "integers".
func plural(name string) string {
	switch name {
	case "true or false":
		return "true or false values"
	case "another JSON type":
		return "another JSON type"
	}
	_, noun, _ := strings.Cut(name, " ")
	return noun + "s"
}

// jsonValueName names the JSON value of a type error: "a string", "an
// array", or a number as written ("1.5").
func jsonValueName(v string) string {
	if n, ok := strings.CutPrefix(v, "number "); ok {
		return n
	}
	switch v {
	case "string", "number":
		return "a " + v
	case "object", "array":
		return "an " + v
	case "bool":
		return "a boolean"
	}
	return v
}
