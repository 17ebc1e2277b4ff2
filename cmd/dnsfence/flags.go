package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/dnsfence/dnsfence/configs"
)

// errUsage is returned for bad command lines; the usage text has already been printed.
var errUsage = errors.New("usage")

// options are the command-line flags. They override the config file for ad-hoc runs and scripts.
type options struct {
	config      string
	configCheck bool
	listen      []string
	upstreams   []string
	blocklists  []string
	http        string
	httpSet     bool
	logFormat   string
	tlsCert     string
	tlsKey      string
	logLevel    string
}

type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}
func (l listFlag) Set(s string) error { *l.v = append(*l.v, s); return nil }

const usageHead = `dnsfence: a DNS forwarder that sinkholes the names on its blocklists.

Usage:
  dnsfence [flags]                 serve DNS (the built-in config unless -config is given)
  dnsfence check [flags] NAME...   say whether each NAME is blocked, and by which list and entry
                                   (an IP address: which egress set, app and source hold it)
  dnsfence apps                    list the curated app lists (EO 13971 apps), entries and sources
  dnsfence report [-http ADDR]     attempts per app and top clients since a running server started
  dnsfence report -since 7d        the persisted history (-app, -client, -json, -csv, -config)
  dnsfence egress rules [-config F] print the nftables table egress installs (nft -f syntax)
  dnsfence version                 print the version

Examples:
  dnsfence                                      127.0.0.1:1053 and [::1]:1053, built-in lists
  dnsfence -config /etc/dnsfence/dnsfence.yaml
  dnsfence -listen 192.168.1.1:53 -upstream udp://9.9.9.9 -blocklist /etc/dnsfence/ads.txt
  dnsfence -config my.yaml -config.check        validate and exit
  dig @127.0.0.1 -p 1053 alipay.com             a blocked name: NXDOMAIN

Signals: SIGHUP reloads the config file and the blocklists (an invalid config is refused and the
running one stays); SIGINT/SIGTERM drain in-flight queries and exit.

Flags:
`

func parseFlags(name string, args []string, stderr io.Writer) (*options, []string, error) {
	o := &options{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.config, "config", "", "YAML config `file` (default: the built-in config, see configs/dnsfence.yaml)")
	fs.BoolVar(&o.configCheck, "config.check", false, "validate the config and load every blocklist (URL lists downloaded to a temporary directory), then exit")
	fs.Var(listFlag{&o.listen}, "listen", "DNS listen `address`: IP:port (UDP and TCP), tls://IP:port (DoT) or https://IP:port/dns-query (DoH); repeatable; replaces the config's listen")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "certificate `file` (PEM) for tls:// and https:// listeners; reloaded when it changes")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key `file` (PEM) for tls:// and https:// listeners")
	fs.Var(listFlag{&o.upstreams}, "upstream", "upstream `URL`: udp://IP[:port], tcp://IP[:port], tls://HOST[:port][?tls_server_name=NAME] (DoT), https://HOST[:port]/path (DoH) or IP[:port] (UDP); HOST names need bootstrap servers; repeatable; replaces the config's upstreams")
	fs.Var(listFlag{&o.blocklists}, "blocklist", "blocklist `file` to add to the configured lists; repeatable")
	fs.StringVar(&o.http, "http", "", "HTTP listen `host:port` for /metrics, /healthz, /readyz and the admin API (\"\" in the config disables it)")
	fs.StringVar(&o.logFormat, "log.format", "", "log `format`: console or json (overrides log.format)")
	fs.StringVar(&o.logLevel, "log.level", "", "log `level`: debug, info, warn, error (overrides log.level)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, err
		}
		return nil, nil, errUsage
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "http" {
			o.httpSet = true
		}
	})
	return o, fs.Args(), nil
}

// recordFlags notes which config paths o's flags set (so problems name the flag); cfg holds the
// file's values, before the flags are applied.
func recordFlags(cfg *configs.Config, o *options) {
	f := cfg.SetByFlag
	for i, l := range o.listen {
		f(fmt.Sprintf("listen[%d]", i), "-listen "+l)
	}
	for i, u := range o.upstreams {
		f(fmt.Sprintf("upstreams[%d]", i), "-upstream "+u)
	}
	for i, p := range o.blocklists {
		f(fmt.Sprintf("blocklists[%d]", len(cfg.Blocklists)+i), "-blocklist "+p)
	}
	for _, fl := range []struct{ path, name, v string }{
		{"log.format", "-log.format", o.logFormat}, {"log.level", "-log.level", o.logLevel},
		{"tls.cert", "-tls-cert", o.tlsCert}, {"tls.key", "-tls-key", o.tlsKey},
	} {
		if fl.v != "" {
			f(fl.path, fl.name+" "+fl.v)
		}
	}
	if o.httpSet {
		f("http.listen", fmt.Sprintf("-http %q", o.http))
	}
}
