package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
)

// bindHint says how to get the right to bind a port below 1024 when binding it was refused
// ("" for other errors): without it a newcomer only sees "bind: permission denied".
func bindHint(hostport string, err error) string {
	_, p, _ := net.SplitHostPort(hostport)
	port, perr := strconv.Atoi(p)
	if perr != nil || port == 0 || port >= 1024 || !errors.Is(err, os.ErrPermission) {
		return ""
	}
	exe, xerr := os.Executable()
	if xerr != nil {
		exe = "bin/dnsfence"
	}
	return fmt.Sprintf("; ports below 1024 need CAP_NET_BIND_SERVICE: grant it with "+
		"`sudo setcap cap_net_bind_service=+ep %s` (again after each rebuild), run dnsfence as the "+
		"systemd unit configs/systemd/dnsfence.service, which grants it, or listen on a port >= 1024", exe)
}

// reportStatusError explains a failed /report fetch; a 401 means the server has an http.token.
func reportStatusError(resp *http.Response) error {
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("report: %s: the server requires its http.token; pass it with -token-file FILE (a file whose first line is the token)", resp.Status)
	}
	return fmt.Errorf("report: %s", resp.Status)
}
