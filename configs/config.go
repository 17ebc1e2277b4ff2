package configs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/dnsfence/dnsfence/blocklist"
	"github.com/dnsfence/dnsfence/resolver"
	"github.com/dnsfence/dnsfence/resolver/upstream"
)

// Config is the YAML configuration. Every field is documented in configs/dnsfence.yaml and README.md.
type Config struct {
	Listen          []string       `yaml:"listen"`
	Upstreams       []string       `yaml:"upstreams"`
	ResolvConf      string         `yaml:"resolv_conf"`
	Bootstrap       []string       `yaml:"bootstrap"`
	UpstreamTLSCA   string         `yaml:"upstream_tls_ca"`
	UpstreamTimeout time.Duration  `yaml:"upstream_timeout"`
	QueryTimeout    time.Duration  `yaml:"query_timeout"`
	UpstreamHealth  HealthConfig   `yaml:"upstream_health"`
	TCPIdleTimeout  time.Duration  `yaml:"tcp_idle_timeout"`
	ShutdownTimeout time.Duration  `yaml:"shutdown_timeout"`
	Blocking        BlockingConfig `yaml:"blocking"`
	Apps            AppSelection   `yaml:"apps"`
	Blocklists      []ListConfig   `yaml:"blocklists"`
	Allowlists      []ListConfig   `yaml:"allowlists"`
	Downloads       DownloadConfig `yaml:"downloads"`
	Cache           CacheConfig    `yaml:"cache"`
	Groups          []GroupConfig  `yaml:"groups"`
	Access          AccessConfig   `yaml:"access"`
	Limits          LimitsConfig   `yaml:"limits"`
	RateLimit       RateConfig     `yaml:"rate_limit"`
	HTTP            HTTPConfig     `yaml:"http"`
	Log             LogConfig      `yaml:"log"`
	TLS             TLSConfig      `yaml:"tls"`
	ForwardZones    []ZoneConfig   `yaml:"forward_zones"`
	PrivateZones    PrivateConfig  `yaml:"private_zones"`
	Rebinding       bool           `yaml:"rebinding_protection"`
	Records         []string       `yaml:"records"`
	HostsFiles      []string       `yaml:"hosts_files"`
	Egress          EgressConfig   `yaml:"egress"`
	History         HistoryConfig  `yaml:"history"`
	Clients         ClientsConfig  `yaml:"clients"`

	// lines maps a field path ("blocking.mode", "upstreams[1]") to its line in the file, so
	// validation errors can point at it.
	lines map[string]int
	// source names the file in messages ("embedded default" when there is none).
	source string
	flags  flagValues // paths set by command-line flags, reported as the flag
	// typeErrs are the values of the wrong type, reported by Validate with the other problems.
	typeErrs []error
}

// Source names the file the config came from, for messages.
func (c *Config) Source() string { return c.source }

// Equal compares two configs as the user wrote them (line numbers aside).
func (c *Config) Equal(o *Config) bool {
	a, b := *c, *o
	a.lines, b.lines = nil, nil
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

// BlockingConfig is how blocked names are answered.
type BlockingConfig struct {
	Mode string        `yaml:"mode"`
	IPv4 string        `yaml:"ipv4"`
	IPv6 string        `yaml:"ipv6"`
	TTL  time.Duration `yaml:"ttl"`
	// InspectAnswers sinkholes forwarded answers whose CNAME chain reaches a blocked name.
	InspectAnswers bool `yaml:"inspect_answers"`
	// BlockedNets sinkholes answers with an A/AAAA address in one of these CIDR prefixes.
	BlockedNets []string `yaml:"blocked_nets"`
}

// ListConfig is one list: a file or directory (path), an HTTP(S) URL (url, downloaded every
// refresh into downloads.cache_dir) or a list built into the binary (builtin). App, if set, files
// its blocks under one of the curated apps (metrics, EDE text, check).
type ListConfig struct {
	Name     string        `yaml:"name"`
	Path     string        `yaml:"path"`
	URL      string        `yaml:"url"`
	Builtin  string        `yaml:"builtin"`
	Category string        `yaml:"category"`
	Refresh  time.Duration `yaml:"refresh"`
	App      string        `yaml:"app"`
	// Mode overrides blocking.mode for this list (nxdomain, null, refused; custom uses
	// blocking.ipv4/ipv6). The built-in doh-bypass list defaults to nxdomain.
	Mode string `yaml:"mode"`
}

// CacheConfig is the response cache.
type CacheConfig struct {
	// MaxEntries bounds the cache; 0 turns it off.
	MaxEntries     int           `yaml:"max_entries"`
	MinTTL         time.Duration `yaml:"min_ttl"`
	MaxTTL         time.Duration `yaml:"max_ttl"`
	NegativeMaxTTL time.Duration `yaml:"negative_max_ttl"`
	ServFailTTL    time.Duration `yaml:"servfail_ttl"`
	ServeStale     bool          `yaml:"serve_stale"`
	StaleMaxAge    time.Duration `yaml:"stale_max_age"`
	// PrefetchHits: an entry hit this often is refreshed shortly before it expires; 0 turns it off.
	PrefetchHits int `yaml:"prefetch_hits"`
}

// DownloadConfig is how URL lists are downloaded.
type DownloadConfig struct {
	// CacheDir keeps the last good download of each URL list, so a restart without network
	// still serves it. Empty: $CACHE_DIRECTORY (systemd's CacheDirectory=), else the user's
	// cache directory (~/.cache/dnsfence).
	CacheDir  string        `yaml:"cache_dir"`
	Timeout   time.Duration `yaml:"timeout"`
	MaxSizeMB int           `yaml:"max_size_mb"`
	Retries   int           `yaml:"retries"`
}

// defaultRefresh is how often a URL list is downloaded again when its refresh is not set.
const defaultRefresh = 24 * time.Hour

// RefreshInterval is the list's refresh interval.
func (l ListConfig) RefreshInterval() time.Duration {
	if l.Refresh > 0 {
		return l.Refresh
	}
	return defaultRefresh
}

// CacheDir is where URL lists are cached.
func (c *Config) CacheDir() string {
	if c.Downloads.CacheDir != "" {
		return c.Downloads.CacheDir
	}
	if d := os.Getenv("CACHE_DIRECTORY"); d != "" {
		return strings.Split(d, ":")[0]
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "dnsfence")
	}
	return filepath.Join(os.TempDir(), "dnsfence-cache")
}

// SinkholeMode is the sinkhole mode that applies to list l ("" means blocking.mode).
func (l ListConfig) SinkholeMode() string {
	if l.Mode == "" && l.Builtin == "doh-bypass" {
		return "nxdomain" // Firefox honours only NXDOMAIN from its canary
	}
	return l.Mode
}

// BootstrapAddrs are the bootstrap servers as IP:port.
func (c *Config) BootstrapAddrs() []string {
	var out []string
	for _, b := range c.Bootstrap {
		if u, err := upstream.Parse(b, upstream.Options{}); err == nil {
			out = append(out, strings.TrimPrefix(u.Address(), "udp://"))
		}
	}
	return out
}

// UpstreamOptions builds the options for DoT/DoH upstreams, reading upstream_tls_ca if set.
func (c *Config) UpstreamOptions() (upstream.Options, error) {
	opts := upstream.Options{Bootstrap: c.BootstrapAddrs()}
	if c.UpstreamTLSCA != "" {
		pem, err := os.ReadFile(c.UpstreamTLSCA)
		if err != nil {
			return opts, fmt.Errorf("upstream_tls_ca: %w", err)
		}
		opts.RootCAs = x509.NewCertPool()
		if !opts.RootCAs.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("upstream_tls_ca %s: no PEM certificate in it", c.UpstreamTLSCA)
		}
	}
	return opts, nil
}

// ZoneConfig sends one zone to its own upstreams (conditional forwarding).
type ZoneConfig struct {
	Zone      string   `yaml:"zone"`
	Upstreams []string `yaml:"upstreams"`
	Trusted   bool     `yaml:"trusted"`
}

// PrivateConfig says where the locally-served zones (private reverse zones, home.arpa, local)
// go: to these upstreams, or, when empty, answered NXDOMAIN by dnsfence itself.
type PrivateConfig struct {
	Upstreams []string `yaml:"upstreams"`
}

// LocalData builds the custom records and hosts files.
func (c *Config) LocalData() (*resolver.LocalData, error) {
	ld, err := resolver.NewLocalData(c.Records)
	if err != nil {
		return nil, err
	}
	for _, p := range c.HostsFiles {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("hosts_files: %w", err)
		}
		err = ld.AddHosts(f, p, 300)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("hosts_files: %w", err)
		}
	}
	return ld, nil
}

// TLSConfig is the certificate of the tls:// and https:// listeners (reloaded when the files change).
type TLSConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// ListenSpec is one listen entry: a bare IP:port (UDP and TCP), tls://IP:port (DoT, default port
// 853) or https://IP:port/path (DoH, default port 443, path /dns-query).
type ListenSpec struct {
	Transport resolver.Transport // UDP means UDP and TCP
	Addr      netip.AddrPort
	Path      string // DoH only
}

// ParseListen parses one listen address: IP:port (UDP and TCP), tls://IP:port or
// https://IP:port/path.
func ParseListen(s string) (ListenSpec, error) {
	scheme, rest, found := strings.Cut(s, "://")
	if !found {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return ListenSpec{}, fmt.Errorf("%q is not IP:port, tls://IP:port or https://IP:port/path (%v)", s, err)
		}
		return ListenSpec{Transport: resolver.UDP, Addr: ap}, nil
	}
	ls := ListenSpec{}
	switch scheme {
	case "tls":
		ls.Transport = resolver.DoT
	case "https":
		ls.Transport = resolver.DoH
	default:
		return ListenSpec{}, fmt.Errorf("%q: unsupported scheme %q (want a bare IP:port, tls:// or https://)", s, scheme)
	}
	hostport, path, _ := strings.Cut(rest, "/")
	ls.Path = "/" + path
	if path == "" {
		ls.Path = "/dns-query"
	}
	if ls.Transport == resolver.DoT && path != "" {
		return ListenSpec{}, fmt.Errorf("%q: a tls:// listener has no path", s)
	}
	ap, err := parseHostPortDefault(hostport, map[resolver.Transport]uint16{resolver.DoT: 853, resolver.DoH: 443}[ls.Transport])
	if err != nil {
		return ListenSpec{}, fmt.Errorf("%q: %v", s, err)
	}
	ls.Addr = ap
	return ls, nil
}

func parseHostPortDefault(s string, port uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address with an optional port", s)
	}
	return netip.AddrPortFrom(ip, port), nil
}

// HealthConfig takes failing upstreams out of rotation.
type HealthConfig struct {
	FailThreshold int           `yaml:"fail_threshold"`
	Cooldown      time.Duration `yaml:"cooldown"`
	MaxCooldown   time.Duration `yaml:"max_cooldown"`
}

// HealthPolicy is the forwarder's policy; nil when fail_threshold is 0.
func (c *Config) HealthPolicy() *upstream.HealthPolicy {
	h := c.UpstreamHealth
	if h.FailThreshold == 0 {
		return nil
	}
	return &upstream.HealthPolicy{FailThreshold: h.FailThreshold, Cooldown: h.Cooldown, MaxCooldown: h.MaxCooldown}
}

// RateConfig limits queries per client (UDP only).
type RateConfig struct {
	ClientQPS   float64 `yaml:"client_qps"`
	ClientBurst float64 `yaml:"client_burst"`
	PrefixQPS   float64 `yaml:"prefix_qps"`
	PrefixBurst float64 `yaml:"prefix_burst"`
	Slip        int     `yaml:"slip"`
}

// LimitsConfig bounds the resources a flood can take.
type LimitsConfig struct {
	MaxInflight         int `yaml:"max_inflight"`
	MaxTCPConnections   int `yaml:"max_tcp_connections"`
	MaxTCPQueries       int `yaml:"max_tcp_queries"`
	UpstreamMaxInflight int `yaml:"upstream_max_inflight"`
	// HeapFloorMB is the Go heap size below which no collection runs (see internal/heapfloor); 0 leaves
	// the Go default (a collection whenever the heap doubles, from 4 MB).
	HeapFloorMB int `yaml:"heap_floor_mb"`
	// UDPBlockingReads reads the UDP sockets with blocking reads answered by the reading
	// goroutine (Linux; listen.Options.BlockingReads); false reads them through Go's poller.
	UDPBlockingReads bool `yaml:"udp_blocking_reads"`
}

// AccessConfig says which clients are served.
type AccessConfig struct {
	Allow  []string `yaml:"allow"`
	Action string   `yaml:"action"`
}

// GroupConfig is the policy for a set of client networks. Unset apps and lists inherit the
// top-level ones; a group named "default" without clients configures everyone else.
type GroupConfig struct {
	Name       string            `yaml:"name"`
	Clients    []string          `yaml:"clients"`
	Apps       AppSelection      `yaml:"apps"`
	Lists      []string          `yaml:"lists"`
	Mode       string            `yaml:"mode"`
	Exemptions []ExemptionConfig `yaml:"exemptions"`
}

// ExemptionConfig lets one app's or list's names through for a group until a time.
type ExemptionConfig struct {
	App    string `yaml:"app"`
	List   string `yaml:"list"`
	Until  string `yaml:"until"`
	Reason string `yaml:"reason"`
}

// AppSelection is the curated app lists to enable: `all`, `none`, one id, or a list of ids.
type AppSelection []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (a *AppSelection) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Value {
		case "all":
			*a = AppIDs()
		case "none", "":
			*a = AppSelection{}
		default:
			*a = AppSelection{n.Value}
		}
		return nil
	case yaml.SequenceNode:
		var ids []string
		if err := n.Decode(&ids); err != nil {
			return err
		}
		*a = ids
		return nil
	}
	return fmt.Errorf("line %d: apps: want all, none or a list of app ids", n.Line)
}

// HTTPConfig is the metrics, health and admin API listener.
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	// Token (or the first line of TokenFile) is the admin API's bearer token; required when
	// Listen is not loopback.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// API serves /api/ and /report; off leaves /metrics, /healthz and /readyz only (and needs
	// no token), e.g. for a container whose metrics port is scraped from the network.
	API bool `yaml:"api"`
	// PProf serves Go's profiler under /debug/pprof/, behind the same token as the API.
	PProf bool `yaml:"pprof"`
}

// LogConfig is logging.
type LogConfig struct {
	Format  string `yaml:"format"`
	Level   string `yaml:"level"`
	Queries bool   `yaml:"queries"`
	// QueryFile, if set, receives the query log as JSON lines, rotated by size, instead of stderr.
	QueryFile       string `yaml:"query_file"`
	QueryMaxSizeMB  int    `yaml:"query_max_size_mb"`
	QueryMaxBackups int    `yaml:"query_max_backups"`
	QueryMaxAgeDays int    `yaml:"query_max_age_days"`
	// QueryClient is how much of the client address the query log keeps: full, truncate, omit.
	QueryClient string `yaml:"query_client"`
}

// defaults are applied before decoding, so a key absent from the file keeps its default. They equal
// configs/dnsfence.yaml (a test checks it); `blocklists: []` turns the built-in list off.
func defaults() Config {
	return Config{
		Listen:          []string{"127.0.0.1:1053", "[::1]:1053"},
		ResolvConf:      "/etc/resolv.conf",
		UpstreamTimeout: 2 * time.Second,
		QueryTimeout:    5 * time.Second,
		UpstreamHealth:  HealthConfig{FailThreshold: 3, Cooldown: 5 * time.Second, MaxCooldown: time.Minute},
		TCPIdleTimeout:  10 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		Blocking:        BlockingConfig{Mode: "nxdomain", TTL: 60 * time.Second, InspectAnswers: true},
		Apps:            AppIDs(),
		Access:          AccessConfig{Allow: prefixStrings(resolver.DefaultAllowedNets()), Action: "refuse"},
		RateLimit:       RateConfig{ClientQPS: 200, ClientBurst: 400, Slip: 2},
		Limits:          LimitsConfig{MaxInflight: 2000, MaxTCPConnections: 500, MaxTCPQueries: 1000, UpstreamMaxInflight: 1000, HeapFloorMB: 10, UDPBlockingReads: true},
		HTTP:            HTTPConfig{Listen: "127.0.0.1:9253", API: true},
		Downloads:       DownloadConfig{Timeout: 30 * time.Second, MaxSizeMB: 64, Retries: 2},
		History:         historyDefaults(),
		Cache: CacheConfig{MaxEntries: 20000, MaxTTL: 24 * time.Hour, NegativeMaxTTL: time.Hour, ServFailTTL: 5 * time.Second,
			ServeStale: true, StaleMaxAge: 24 * time.Hour, PrefetchHits: 3},
		Log: LogConfig{Format: "console", Level: "info", QueryMaxSizeMB: 100, QueryMaxBackups: 3, QueryClient: "full"},
	}
}

// Load reads and parses the config file at path; an empty path is the built-in default. It does
// not validate: flags may still change the result.
func Load(path string) (*Config, error) {
	data, source := DefaultConfig(), "built-in config"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		data, source = b, path
	}
	return Parse(data, source)
}

// Parse decodes YAML strictly. A file that is not YAML is an error with its line. Unknown keys and
// values of the wrong type are kept and reported by Validate together with every other problem,
// in line order, each naming its key. source names the file in messages.
func Parse(data []byte, source string) (*Config, error) {
	cfg := defaults()
	cfg.source = source
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	decErr := dec.Decode(&cfg)
	var te *yaml.TypeError // wrong types: the rest is decoded, and Validate reports both (typeerrors.go)
	if err := decErr; err != nil && !errors.Is(err, io.EOF) && !errors.As(err, &te) {
		lines := strings.Split(cleanYAMLError(err).Error(), "\n")
		return nil, fmt.Errorf("invalid configuration:\n%s: %s", source, strings.Join(lines, "\n"+source+": "))
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", source, cleanYAMLError(err))
	}
	cfg.lines = map[string]int{}
	walkYAML(&root, "", func(p string, line int, _ *yaml.Node) { cfg.lines[p] = line })
	// `mode: null` means the null sinkhole, but YAML reads it as null and leaves the default.
	if n := scalarAt(&root, "blocking", "mode"); n != nil && n.Tag == "!!null" {
		cfg.Blocking.Mode = n.Value
	}
	if te != nil {
		cfg.typeErrs = explainTypeErrors(te, &root, source)
	}
	return &cfg, nil
}

// cleanYAMLError drops the library's "yaml: unmarshal errors:" preamble and Go type names so the
// message talks about the file, not our structs.
func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			e = strings.Replace(e, " in type main.Config", "", 1)
			for _, t := range []string{"main.BlockingConfig", "main.ListConfig", "main.HTTPConfig", "main.LogConfig", "main.EgressConfig"} {
				e = strings.Replace(e, " in type "+t, "", 1)
			}
			e = strings.Replace(e, "field ", "unknown key ", 1)
			e = strings.Replace(e, " not found", "", 1)
			e = strings.Replace(e, " into time.Duration", " as a duration (want e.g. 2s, 500ms, 1m)", 1)
			e = strings.Replace(e, "cannot unmarshal !!str", "cannot read", 1)
			msgs[i] = e
		}
		return errors.New(strings.Join(msgs, "\n"))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// walkYAML calls f for every mapping value and sequence item under n, with its dotted path
// ("blocking.mode", "upstreams[1]"), the line of its key (or item) and the value's node.
func walkYAML(n *yaml.Node, path string, f func(path string, line int, v *yaml.Node)) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walkYAML(c, path, f)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			f(p, n.Content[i].Line, n.Content[i+1])
			walkYAML(n.Content[i+1], p, f)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			f(p, c.Line, c)
			walkYAML(c, p, f)
		}
	}
}

// scalarAt returns the scalar node at the mapping path keys, or nil.
func scalarAt(n *yaml.Node, keys ...string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for _, k := range keys {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	if n.Kind != yaml.ScalarNode {
		return nil
	}
	return n
}

// problem formats a validation error for the field at path, with its line when the file set it.
func (c *Config) problem(path, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if f, ok := c.flags.flag(path); ok {
		return fmt.Errorf("%s: %s", f, msg)
	}
	if line, ok := c.lines[path]; ok {
		return fmt.Errorf("%s: line %d: %s: %s", c.source, line, path, msg)
	}
	return fmt.Errorf("%s: %s: %s", c.source, path, msg)
}

// Validate checks every value and returns all problems joined, each naming its line (or the flag
// that set it), sorted by line; the unknown keys and wrong types Parse found come with them.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Listen) == 0 {
		errs = append(errs, c.problem("listen", "at least one address is needed"))
	}
	encrypted := false
	for i, l := range c.Listen {
		ls, err := ParseListen(l)
		if err != nil {
			errs = append(errs, c.problem(fmt.Sprintf("listen[%d]", i), "%v", err))
		}
		encrypted = encrypted || ls.Transport == resolver.DoT || ls.Transport == resolver.DoH
	}
	upOpts := upstream.Options{Bootstrap: c.BootstrapAddrs()}
	for i, z := range c.ForwardZones {
		p := fmt.Sprintf("forward_zones[%d]", i)
		if _, ok := dns.IsDomainName(z.Zone); !ok || z.Zone == "" {
			errs = append(errs, c.problem(p+".zone", "%q is not a domain name", z.Zone))
		}
		if len(z.Upstreams) == 0 {
			errs = append(errs, c.problem(p, "upstreams is required"))
		}
		for j, u := range z.Upstreams {
			if _, err := upstream.Parse(u, upOpts); err != nil {
				errs = append(errs, c.problem(fmt.Sprintf("%s.upstreams[%d]", p, j), "%v", err))
			}
		}
	}
	for i, r := range c.Records {
		if _, err := resolver.NewLocalData([]string{r}); err != nil {
			errs = append(errs, c.problem(fmt.Sprintf("records[%d]", i), "%q is not a resource record in zone-file syntax, e.g. \"nas.home.arpa. 300 IN A 192.168.1.10\"", r))
		}
	}
	for j, u := range c.PrivateZones.Upstreams {
		if _, err := upstream.Parse(u, upOpts); err != nil {
			errs = append(errs, c.problem(fmt.Sprintf("private_zones.upstreams[%d]", j), "%v", err))
		}
	}
	if encrypted && (c.TLS.Cert == "" || c.TLS.Key == "") {
		errs = append(errs, c.problem("tls", "tls:// and https:// listeners need tls.cert and tls.key (or -tls-cert and -tls-key)"))
	}
	for i, b := range c.Bootstrap {
		if _, err := upstream.Parse(b, upstream.Options{}); err != nil || strings.Contains(b, "://") {
			errs = append(errs, c.problem(fmt.Sprintf("bootstrap[%d]", i), "%q: want a plain DNS server IP[:port]", b))
		}
	}
	for i, u := range c.Upstreams {
		if _, err := upstream.Parse(u, upstream.Options{Bootstrap: c.BootstrapAddrs()}); err != nil {
			errs = append(errs, c.problem(fmt.Sprintf("upstreams[%d]", i), "%v", err))
		}
	}
	if len(c.Upstreams) == 0 && c.ResolvConf == "" {
		errs = append(errs, c.problem("upstreams", "no upstreams and no resolv_conf to read them from"))
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{
		{"upstream_timeout", c.UpstreamTimeout}, {"query_timeout", c.QueryTimeout},
		{"tcp_idle_timeout", c.TCPIdleTimeout}, {"shutdown_timeout", c.ShutdownTimeout},
		{"blocking.ttl", c.Blocking.TTL},
		{"upstream_health.cooldown", c.UpstreamHealth.Cooldown}, {"upstream_health.max_cooldown", c.UpstreamHealth.MaxCooldown},
	} {
		if d.v <= 0 {
			errs = append(errs, c.problem(d.path, "must be positive, got %v", d.v))
		}
	}
	if c.Blocking.TTL%time.Second != 0 || c.Blocking.TTL > 24*time.Hour {
		errs = append(errs, c.problem("blocking.ttl", "must be whole seconds up to 24h, got %v", c.Blocking.TTL))
	}
	mode, err := resolver.ParseSinkholeMode(c.Blocking.Mode)
	if err != nil {
		errs = append(errs, c.problem("blocking.mode", "%v", err))
	}
	v4, v6, ipErrs := c.CustomIPs()
	errs = append(errs, ipErrs...)
	if err == nil && mode == resolver.SinkholeCustom && !v4.IsValid() && !v6.IsValid() {
		errs = append(errs, c.problem("blocking.mode", "custom mode needs blocking.ipv4 and/or blocking.ipv6"))
	}
	_, netErrs := c.BlockedNets()
	errs = append(errs, netErrs...)
	valid := strings.Join(AppIDs(), ", ")
	names := map[string]bool{}
	for i, id := range c.Apps {
		p := "apps"
		if _, ok := c.lines[fmt.Sprintf("apps[%d]", i)]; ok {
			p = fmt.Sprintf("apps[%d]", i)
		}
		switch {
		case !IsApp(id):
			errs = append(errs, c.problem(p, "unknown app %q (valid: all, none, %s)", id, valid))
		case names[id]:
			errs = append(errs, c.problem(p, "app %q listed twice", id))
		}
		names[id] = true
	}
	errs = append(errs, c.validateLists("blocklists", c.Blocklists, names, valid)...)
	errs = append(errs, c.validateLists("allowlists", c.Allowlists, names, valid)...)
	if n := len(c.Apps) + len(c.Blocklists) + len(c.Allowlists); n > blocklist.MaxLists {
		errs = append(errs, c.problem("blocklists", "at most %d lists (apps, blocklists and allowlists together) are supported, %d are configured; put files in a directory list", blocklist.MaxLists, n))
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{
		{"cache.min_ttl", c.Cache.MinTTL}, {"cache.max_ttl", c.Cache.MaxTTL}, {"cache.negative_max_ttl", c.Cache.NegativeMaxTTL},
		{"cache.servfail_ttl", c.Cache.ServFailTTL}, {"cache.stale_max_age", c.Cache.StaleMaxAge},
	} {
		if d.v < 0 {
			errs = append(errs, c.problem(d.path, "must not be negative"))
		}
	}
	if c.Cache.MaxEntries < 0 || c.Cache.PrefetchHits < 0 {
		errs = append(errs, c.problem("cache", "max_entries and prefetch_hits must be 0 (off) or more"))
	}
	if c.Cache.MaxTTL > 0 && c.Cache.MinTTL > c.Cache.MaxTTL {
		errs = append(errs, c.problem("cache.min_ttl", "is above cache.max_ttl"))
	}
	if c.Downloads.Timeout <= 0 {
		errs = append(errs, c.problem("downloads.timeout", "must be positive"))
	}
	if c.Downloads.MaxSizeMB <= 0 {
		errs = append(errs, c.problem("downloads.max_size_mb", "must be positive"))
	}
	if c.Downloads.Retries < 0 {
		errs = append(errs, c.problem("downloads.retries", "must be 0 or more"))
	}
	errs = append(errs, c.validateGroups(names)...)
	for _, l := range []struct {
		path string
		v    int
	}{
		{"upstream_health.fail_threshold", c.UpstreamHealth.FailThreshold},
		{"limits.max_inflight", c.Limits.MaxInflight}, {"limits.max_tcp_connections", c.Limits.MaxTCPConnections},
		{"limits.max_tcp_queries", c.Limits.MaxTCPQueries}, {"limits.upstream_max_inflight", c.Limits.UpstreamMaxInflight},
		{"limits.heap_floor_mb", c.Limits.HeapFloorMB},
	} {
		if l.v < 0 {
			errs = append(errs, c.problem(l.path, "must be 0 (unlimited) or more, got %d", l.v))
		}
	}
	for _, r := range []struct {
		path string
		v    float64
	}{
		{"rate_limit.client_qps", c.RateLimit.ClientQPS}, {"rate_limit.client_burst", c.RateLimit.ClientBurst},
		{"rate_limit.prefix_qps", c.RateLimit.PrefixQPS}, {"rate_limit.prefix_burst", c.RateLimit.PrefixBurst},
		{"rate_limit.slip", float64(c.RateLimit.Slip)},
	} {
		if r.v < 0 {
			errs = append(errs, c.problem(r.path, "must be 0 (off) or more, got %v", r.v))
		}
	}
	_, accessErrs := c.AllowedNets()
	errs = append(errs, accessErrs...)
	if c.Access.Action != "refuse" && c.Access.Action != "drop" {
		errs = append(errs, c.problem("access.action", "%q: want refuse or drop", c.Access.Action))
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			errs = append(errs, c.problem("http.listen", "%q is not host:port (%v)", c.HTTP.Listen, err))
		}
	}
	if c.Log.Format != "console" && c.Log.Format != "json" {
		errs = append(errs, c.problem("log.format", "%q: want console or json", c.Log.Format))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, c.problem("log.level", "%q: want debug, info, warn or error", c.Log.Level))
	}
	errs = append(errs, c.validateQueryLog()...)
	errs = append(errs, c.validateHistory()...)
	errs = append(errs, c.validateHTTP()...)
	errs = append(errs, c.validateEgress()...)
	errs = append(errs, c.typeErrs...)
	sortByLine(errs)
	return errors.Join(errs...)
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// AllowedNets parses access.allow (a bare address is a single-host prefix).
func (c *Config) AllowedNets() (nets []netip.Prefix, errs []error) {
	for i, s := range c.Access.Allow {
		p, err := ParsePrefixOrAddr(s)
		if err != nil {
			errs = append(errs, c.problem(fmt.Sprintf("access.allow[%d]", i), "%q is not a CIDR prefix or address", s))
			continue
		}
		nets = append(nets, p)
	}
	return nets, errs
}

func ParsePrefixOrAddr(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ExposedListeners returns the listen addresses reachable from the internet (a public address or
// a wildcard) when access admits every client: the setup that makes an open resolver.
func (c *Config) ExposedListeners() []string {
	nets, _ := c.AllowedNets()
	if !resolver.AllowsAll(nets) {
		return nil
	}
	var out []string
	for _, l := range c.Listen {
		ls, err := ParseListen(l)
		if err != nil {
			continue
		}
		a := ls.Addr.Addr().Unmap()
		if a.IsUnspecified() || a.IsGlobalUnicast() && !a.IsPrivate() && !netip.MustParsePrefix("100.64.0.0/10").Contains(a) {
			out = append(out, l)
		}
	}
	return out
}

// validateLists checks the blocklists or allowlists section; names collects the list names so far.
func (c *Config) validateLists(section string, lists []ListConfig, names map[string]bool, validApps string) []error {
	var errs []error
	allow := section == "allowlists"
	for i, l := range lists {
		p := fmt.Sprintf("%s[%d]", section, i)
		switch {
		case l.Name == "":
			errs = append(errs, c.problem(p, "name is required"))
		case names[l.Name] && IsApp(l.Name):
			errs = append(errs, c.problem(p+".name", "list name %q is taken by the enabled app list; name it otherwise (and set app: %s to file it under that app)", l.Name, l.Name))
		case names[l.Name]:
			errs = append(errs, c.problem(p+".name", "duplicate list name %q", l.Name))
		}
		names[l.Name] = true
		if m := l.SinkholeMode(); m != "" {
			if allow {
				errs = append(errs, c.problem(p+".mode", "an allowlist blocks nothing, so it has no sinkhole mode"))
			} else if _, err := resolver.ParseSinkholeMode(m); err != nil {
				errs = append(errs, c.problem(p+".mode", "%v", err))
			}
		}
		switch {
		case l.App != "" && allow:
			errs = append(errs, c.problem(p+".app", "an allowlist blocks nothing, so it is filed under no app"))
		case l.App != "" && !IsApp(l.App):
			errs = append(errs, c.problem(p+".app", "unknown app %q (valid: %s)", l.App, validApps))
		}
		set := 0
		for _, v := range []string{l.Path, l.URL, l.Builtin} {
			if v != "" {
				set++
			}
		}
		if set != 1 {
			errs = append(errs, c.problem(p, "exactly one of path, url or builtin is required"))
		}
		if l.Builtin != "" {
			if _, err := fs.Stat(Lists(), BuiltinPath(l.Builtin)); err != nil {
				errs = append(errs, c.problem(p+".builtin", "unknown built-in list %q (built in: %s)",
					l.Builtin, strings.Join(Builtins(), ", ")))
			}
		}
		if l.URL != "" {
			if u, err := url.Parse(l.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, c.problem(p+".url", "want an http:// or https:// URL, got %q", l.URL))
			}
			if strings.ContainsAny(l.Name, `/\`) || strings.HasPrefix(l.Name, ".") {
				errs = append(errs, c.problem(p+".name", "a URL list's name names its cache file: no slashes or leading dot"))
			}
		}
		switch {
		case l.Refresh != 0 && l.URL == "":
			errs = append(errs, c.problem(p+".refresh", "only URL lists are refreshed (files reload when they change)"))
		case l.Refresh != 0 && l.Refresh < time.Minute:
			errs = append(errs, c.problem(p+".refresh", "at least 1m, got %s (be kind to list hosts)", l.Refresh))
		}
	}
	return errs
}

// validateGroups checks the client groups; lists are the names of the enabled apps and lists.
func (c *Config) validateGroups(lists map[string]bool) []error {
	if len(c.Groups) == 0 {
		return nil
	}
	var errs []error
	enabledApps := map[string]bool{}
	for _, a := range c.Apps {
		enabledApps[a] = true
	}
	seen := map[string]bool{}
	for i, g := range c.Groups {
		p := fmt.Sprintf("groups[%d]", i)
		switch {
		case g.Name == "":
			errs = append(errs, c.problem(p, "name is required"))
		case seen[g.Name]:
			errs = append(errs, c.problem(p+".name", "duplicate group name %q", g.Name))
		case g.Name != "default" && len(g.Clients) == 0:
			errs = append(errs, c.problem(p, "clients is required (only the group named default has none)"))
		case g.Name == "default" && len(g.Clients) > 0:
			errs = append(errs, c.problem(p+".clients", "the default group takes every client no other group has; give it no clients"))
		}
		seen[g.Name] = true
		for j, cl := range g.Clients {
			if _, err := ParsePrefixOrAddr(cl); err != nil {
				errs = append(errs, c.problem(fmt.Sprintf("%s.clients[%d]", p, j), "%q is not a CIDR prefix or address", cl))
			}
		}
		for j, a := range g.Apps {
			if !enabledApps[a] {
				errs = append(errs, c.problem(fmt.Sprintf("%s.apps[%d]", p, j), "app %q is not enabled in the top-level apps (enabled: %s)", a, strings.Join(c.Apps, ", ")))
			}
		}
		for j, l := range g.Lists {
			if !lists[l] || IsApp(l) {
				errs = append(errs, c.problem(fmt.Sprintf("%s.lists[%d]", p, j), "no blocklist named %q (apps go under apps)", l))
			}
		}
		if g.Mode != "" && g.Mode != "enforce" && g.Mode != "log-only" {
			errs = append(errs, c.problem(p+".mode", "%q: want enforce or log-only", g.Mode))
		}
		for j, e := range g.Exemptions {
			ep := fmt.Sprintf("%s.exemptions[%d]", p, j)
			if (e.App == "") == (e.List == "") {
				errs = append(errs, c.problem(ep, "exactly one of app or list is required"))
			}
			if e.App != "" && !IsApp(e.App) {
				errs = append(errs, c.problem(ep+".app", "unknown app %q", e.App))
			}
			if e.List != "" && !lists[e.List] && e.List != resolver.BlockedNetsList {
				errs = append(errs, c.problem(ep+".list", "no list named %q", e.List))
			}
			if _, err := time.Parse(time.RFC3339, e.Until); err != nil {
				errs = append(errs, c.problem(ep+".until", "%q is not a time like 2026-12-31T00:00:00Z", e.Until))
			}
			if e.Reason == "" {
				errs = append(errs, c.problem(ep, "reason is required (it is logged while the exemption is active)"))
			}
		}
	}
	return errs
}

// CustomIPs parses blocking.ipv4 and blocking.ipv6 (either may be empty).
func (c *Config) CustomIPs() (v4, v6 netip.Addr, errs []error) {
	if c.Blocking.IPv4 != "" {
		ip, err := netip.ParseAddr(c.Blocking.IPv4)
		if err != nil || !ip.Is4() {
			errs = append(errs, c.problem("blocking.ipv4", "%q is not an IPv4 address", c.Blocking.IPv4))
		}
		v4 = ip
	}
	if c.Blocking.IPv6 != "" {
		ip, err := netip.ParseAddr(c.Blocking.IPv6)
		if err != nil || !ip.Is6() || ip.Is4In6() {
			errs = append(errs, c.problem("blocking.ipv6", "%q is not an IPv6 address", c.Blocking.IPv6))
		}
		v6 = ip
	}
	return v4, v6, errs
}

// BlockedNets parses blocking.blocked_nets.
func (c *Config) BlockedNets() (nets []netip.Prefix, errs []error) {
	for i, s := range c.Blocking.BlockedNets {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, c.problem(fmt.Sprintf("blocking.blocked_nets[%d]", i), "%q is not a CIDR prefix (e.g. 203.0.113.0/24)", s))
			continue
		}
		nets = append(nets, p.Masked())
	}
	return nets, errs
}

// Sinkhole builds the sinkhole for mode ("" is blocking.mode) from a validated config.
func (c *Config) Sinkhole(mode string) *resolver.Sinkhole {
	if mode == "" {
		mode = c.Blocking.Mode
	}
	m, _ := resolver.ParseSinkholeMode(mode)
	v4, v6, _ := c.CustomIPs()
	return &resolver.Sinkhole{Mode: m, IPv4: v4, IPv6: v6, TTL: c.Blocking.TTL}
}

// ListSinkholes are the per-list overrides of the sinkhole mode.
func (c *Config) ListSinkholes() map[string]*resolver.Sinkhole {
	out := map[string]*resolver.Sinkhole{}
	for _, l := range c.Blocklists {
		if m := l.SinkholeMode(); m != "" {
			out[l.Name] = c.Sinkhole(m)
		}
	}
	return out
}

// DefaultUpstreams reads the nameservers from resolvConf, minus those that are dnsfence itself (one
// of the listen addresses, or any local address when listening on a wildcard on port 53), which
// would make every query loop back to us.
func DefaultUpstreams(resolvConf string, listen []string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("no upstreams configured and %s unreadable: %w", resolvConf, err)
	}
	port, err := strconv.ParseUint(cc.Port, 10, 16)
	if err != nil {
		port = 53
	}
	var out, skipped []string
	for _, s := range cc.Servers {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		ap := netip.AddrPortFrom(ip.Unmap(), uint16(port))
		if isSelf(ap, listen) {
			skipped = append(skipped, ap.String())
			continue
		}
		out = append(out, ap.String())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no upstreams configured and none usable in %s (servers %v; skipped as our own listen address: %v): set upstreams or -upstream",
			resolvConf, cc.Servers, skipped)
	}
	return out, nil
}

func isSelf(server netip.AddrPort, listen []string) bool {
	for _, l := range listen {
		ls, err := ParseListen(l)
		ap := ls.Addr
		if err != nil || ls.Transport != resolver.UDP || ap.Port() != server.Port() {
			continue
		}
		if ap.Addr().Unmap() == server.Addr() {
			return true
		}
		if ap.Addr().IsUnspecified() && isLocal(server.Addr()) {
			return true
		}
	}
	return false
}

// isLocal reports whether ip is loopback or assigned to one of this machine's interfaces.
func isLocal(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip {
			return true
		}
	}
	return false
}
