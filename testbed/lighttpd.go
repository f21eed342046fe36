package testbed

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// Lighttpd is a config for Debian's lighttpd laid out like the CCU's own
// web server's (RaspberryMatic's /etc/lighttpd/lighttpd.conf): the same
// modules (mod_proxy among them), a document root standing for /www (whose
// addons/ is the addons' web folder), the usual MIME types (without them
// lighttpd sends application/octet-stream and a browser downloads an
// addon's index.html), *.cgi run by tclsh, and the snippets
// of /etc/config/lighttpd/*.conf included at the end, where an addon's
// snippet goes. mod_setenv hands the CGIs what a test needs (its root, a
// PATH with busybox first), which a hub does not need. The addon's tests
// and the end-to-end tests run lighttpd with it (Write, then Args under the
// caller's process runner).
type Lighttpd struct {
	Port     int               // on 127.0.0.1
	DocRoot  string            // the CCU's /www
	Tclsh    string            // runs *.cgi
	Env      map[string]string // what every CGI gets besides lighttpd's own variables
	Include  string            // a glob of snippets included last: the CCU's /etc/config/lighttpd/*.conf
	ErrorLog string            // lighttpd's error log
}

// Write writes the config to path.
func (l Lighttpd) Write(path string) error {
	var env []string
	for _, k := range slices.Sorted(maps.Keys(l.Env)) {
		env = append(env, fmt.Sprintf("%q => %q", k, l.Env[k]))
	}
	conf := fmt.Sprintf(`server.modules = ( "mod_access", "mod_redirect", "mod_rewrite", "mod_setenv", "mod_cgi", "mod_proxy" )
server.document-root = %q
server.bind = "127.0.0.1"
server.port = %d
server.errorlog = %q
index-file.names += ( "index.htm", "index.html", "index.cgi" )
mimetype.assign = ( ".html" => "text/html", ".htm" => "text/html", ".css" => "text/css", ".js" => "application/javascript", ".json" => "application/json", ".png" => "image/png", ".svg" => "image/svg+xml", ".txt" => "text/plain" )
url.access-deny = ( "~", ".inc" )
server.follow-symlink = "enable"
cgi.assign = ( ".cgi" => %q )
setenv.set-environment = ( %s )
include %q
`, strings.TrimSuffix(l.DocRoot, "/")+"/", l.Port, l.ErrorLog, l.Tclsh, strings.Join(env, ", "), l.Include)
	return os.WriteFile(path, []byte(conf), 0o644)
}

// URL is the server's base address, without a trailing slash.
func (l Lighttpd) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", l.Port) }

// CheckArgs is the command line that checks the config at conf (lighttpd
// -tt: it loads the modules and the included snippets too).
func (l Lighttpd) CheckArgs(bin, conf string) []string { return []string{bin, "-tt", "-f", conf} }

// Args is the command line that runs lighttpd with the config at conf, in
// the foreground.
func (l Lighttpd) Args(bin, conf string) []string { return []string{bin, "-D", "-f", conf} }
