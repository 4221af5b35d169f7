package validate

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAllowlist(t *testing.T) {
	al := NewAllowlist(
		[]string{"google.protobuf.Struct.fields", "google.protobuf.Value.string_value", "google.protobuf.Value.struct_value", "google.protobuf.ListValue.values"},
		[]string{"google.protobuf.Duration"},
	)
	nested, _ := structpb.NewStruct(map[string]any{"a": map[string]any{"b": "c"}})
	withNumber, _ := structpb.NewStruct(map[string]any{"a": map[string]any{"b": 1.0}})
	tests := []struct {
		name      string
		msg       proto.Message
		wantField string
		wantType  string
	}{
		{name: "allowed nested map", msg: nested},
		{name: "disallowed deep field", msg: withNumber, wantField: "google.protobuf.Value.number_value"},
		{name: "empty message", msg: &structpb.Struct{}},
		{name: "disallowed any type", msg: &structpb.ListValue{}, wantField: ""},
		{name: "any payload type checked", msg: mustAny(t, wrapperspb.String("x")), wantType: "type.googleapis.com/google.protobuf.StringValue"},
		{name: "any payload fields checked", msg: mustAny(t, durationpb.New(5)), wantField: "google.protobuf.Duration.nanos"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := al.Message(tc.msg)
			var fe *UnsupportedFieldError
			var te *UnsupportedTypeError
			switch {
			case tc.wantField != "":
				if !errors.As(err, &fe) || string(fe.Field) != tc.wantField {
					t.Fatalf("got %v, want unsupported field %s", err, tc.wantField)
				}
			case tc.wantType != "":
				if !errors.As(err, &te) || te.TypeURL != tc.wantType {
					t.Fatalf("got %v, want unsupported type %s", err, tc.wantType)
				}
			default:
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
			}
		})
	}
}
