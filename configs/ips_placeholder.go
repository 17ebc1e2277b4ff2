package configs

import "path"

// PLACEHOLDER: branch h16ips defines these two beside the curated address lists; delete this
// file when merging it.

// AppIPPath is the path inside Lists() of the address list of app id.
func AppIPPath(id string) string { return path.Join("blocklists", "apps", id+".ips") }

// BuiltinIPPath is the path inside Lists() of the address list of the built-in list name.
func BuiltinIPPath(name string) string { return path.Join("blocklists", name+".ips") }
