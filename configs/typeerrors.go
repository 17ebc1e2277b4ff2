package configs

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	yamlTypeErrRE    = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	yamlUnknownKeyRE = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
	problemLineRE    = regexp.MustCompile(`: line (\d+): `)
)

// yamlNodeAt is a key or list item of the file: its dotted path and value.
type yamlNodeAt struct {
	path string
	node *yaml.Node
}

// explainTypeErrors rewrites the decoder's messages ("line 3: cannot unmarshal !!int `60` into
// time.Duration") as "SOURCE: line 3: blocking.ttl: 60 is not a duration (want e.g. 60s)". The
// decoder fills in everything else, so Validate reports these together with the problems it finds
// in the rest, each naming its key, never the parser's tags (!!int) or Go types.
func explainTypeErrors(te *yaml.TypeError, root *yaml.Node, source string) []error {
	byLine := map[int][]yamlNodeAt{}
	walkYAML(root, "", func(p string, line int, v *yaml.Node) { byLine[line] = append(byLine[line], yamlNodeAt{p, v}) })
	out := &struct{ errs []error }{}
	for _, msg := range te.Errors {
		if m := yamlUnknownKeyRE.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			key := m[2]
			for _, n := range byLine[line] {
				if n.path == key || strings.HasSuffix(n.path, "."+key) {
					key = n.path
				}
			}
			out.errs = append(out.errs, fmt.Errorf("%s: line %d: unknown key %s", source, line, key))
			continue
		}
		m := yamlTypeErrRE.FindStringSubmatch(msg)
		if m == nil {
			out.errs = append(out.errs, fmt.Errorf("%s: %s", source, msg))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		tag, value, into := m[2], m[3], m[4]
		key := ""
		for _, n := range byLine[line] {
			if key == "" || n.node.Kind == yaml.ScalarNode && n.node.Value == value {
				key = n.path
			}
		}
		shown := value
		switch tag {
		case "seq":
			shown = "a list"
		case "map":
			shown = "a mapping"
		}
		if key != "" {
			key += ": "
		}
		out.errs = append(out.errs, fmt.Errorf("%s: line %d: %s%s %s", source, line, key, shown, wantType(into, tag, value)))
	}
	return out.errs
}

// wantType says what a value of Go type into should have looked like.
func wantType(into, tag, value string) string {
	switch {
	case into == "time.Duration":
		if _, err := strconv.Atoi(value); err == nil && tag == "int" {
			return "is not a duration (want e.g. " + value + "s)"
		}
		return "is not a duration (want e.g. 2s, 500ms, 1m)"
	case strings.HasPrefix(into, "int"), strings.HasPrefix(into, "uint"):
		return "is not a whole number"
	case strings.HasPrefix(into, "float"):
		return "is not a number"
	case into == "bool":
		return "is not true or false"
	case into == "string":
		return "is not a single value (want a string)"
	case strings.HasPrefix(into, "[]"):
		return "is not a list (want [a, b], or one \"- item\" per line)"
	}
	return "is not a mapping (want \"key: value\" lines)"
}

// sortByLine orders problems by the line they name (problems without a line last, in their
// order), so type errors and Validate's problems read top to bottom like the file.
func sortByLine(errs []error) {
	lineOf := func(err error) int {
		if m := problemLineRE.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return int(^uint(0) >> 1)
	}
	sort.SliceStable(errs, func(i, j int) bool { return lineOf(errs[i]) < lineOf(errs[j]) })
}
