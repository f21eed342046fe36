#!/bin/tclsh
# status.cgi - the fallback page at /addons/hubtunnel/status.cgi?sid=@…@:
# index.html sends the owner here when the settings panel (served by the
# agent) does not answer. It says, in German and English, that the service
# is not running and why: the agent's start error (start-error) and what
# the supervisor saw (supervisor.state). Its one button (POST) runs the init
# script's start. lighttpd runs *.cgi with /bin/tclsh as root.
#
# The CCU session is checked as the WebUI's own pages check it
# (cp_software.cgi: system.GetSessionVarStr on the session id, without its
# @), by asking ReGaHss. Not through tclrega.so's rega_script, but with a
# plain HTTP POST of the same script to ReGaHss's own HTTP port on loopback
# (/etc/rega_http.port: 8183 on RaspberryMatic; lighttpd forwards :8181
# there): the same question to the same server, and one a test can answer
# without the CCU's library. No session, no page.
#
# HUBTUNNEL_ROOT (unset on a hub) is put before every path, for tests.

proc root {} {
    global env
    if {[info exists env(HUBTUNNEL_ROOT)]} {
        return $env(HUBTUNNEL_ROOT)
    }
    return ""
}

proc envget {name} {
    global env
    if {[info exists env($name)]} {
        return $env($name)
    }
    return ""
}

proc readfile {file max} {
    if {[catch {
        set fd [open $file r]
        set content [read $fd $max]
        close $fd
    }]} {
        return ""
    }
    return $content
}

proc html {s} {
    regsub -all {&} $s {\&amp;} s
    regsub -all {<} $s {\&lt;} s
    regsub -all {>} $s {\&gt;} s
    regsub -all {"} $s {\&quot;} s
    regsub -all {'} $s {\&#39;} s
    return $s
}

# query returns the query string's pairs (never a variable of this script).
proc query {} {
    array set q {}
    foreach pair [split [envget QUERY_STRING] &] {
        set eq [string first = $pair]
        if {$eq > 0} {
            set q([string range $pair 0 [expr {$eq - 1}]]) [string range $pair [expr {$eq + 1}] end]
        }
    }
    return [array get q]
}

proc reply {status body} {
    puts -nonewline "Status: $status\r\n"
    puts -nonewline "Content-Type: text/html; charset=utf-8\r\n"
    puts -nonewline "Cache-Control: no-store\r\n"
    puts -nonewline "X-Frame-Options: SAMEORIGIN\r\n\r\n"
    puts -nonewline $body
    exit 0
}

proc page {title content} {
    return "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>[html $title]</title>\n<style>body{font-family:sans-serif;max-width:46em;margin:1em auto;padding:0 1em}pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}.en{color:#555}</style>\n</head>\n<body>\n$content</body>\n</html>\n"
}

proc refuse {status de en} {
    reply $status [page hubtunnel "<h1>hubtunnel</h1>\n<p lang=\"de\">$de</p>\n<p lang=\"en\" class=\"en\">$en</p>\n"]
}

# rega asks ReGaHss to run script and returns its output (without the
# <xml> trailer ReGaHss appends), or fails.
proc rega {script} {
    set port [string trim [readfile "[root]/etc/rega_http.port" 20]]
    if {![regexp {^[0-9]+$} $port]} {
        set port 8181
    }
    set s [socket 127.0.0.1 $port]
    fconfigure $s -translation binary
    puts -nonewline $s "POST /tclrega.exe HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: [string length $script]\r\n\r\n$script"
    flush $s
    set answer [read $s 65536]
    close $s
    set end [string first "\r\n\r\n" $answer]
    if {![regexp {^HTTP/[0-9.]+ 200 } $answer] || $end < 0} {
        error "ReGaHss answered [lindex [split $answer \n] 0]"
    }
    set body [string range $answer [expr {$end + 4}] end]
    set xml [string first "<xml>" $body]
    if {$xml >= 0} {
        set body [string range $body 0 [expr {$xml - 1}]]
    }
    return $body
}

# session_ok: sid is a CCU session id (@ and ten letters or digits; only
# such a word is put into the script) that ReGaHss knows.
proc session_ok {sid} {
    # ^@?[A-Za-z0-9]{10}@?$, in Tcl 8.0's regular expressions (no {10}).
    set id $sid
    if {[string index $id 0] == "@"} {
        set id [string range $id 1 end]
    }
    if {[string index $id end] == "@"} {
        set id [string range $id 0 [expr {[string length $id] - 2}]]
    }
    if {[string length $id] != 10 || ![regexp {^[A-Za-z0-9]+$} $id]} {
        return 0
    }
    if {[catch {set user [rega "Write(system.GetSessionVarStr('$id'));"]}]} {
        return 0
    }
    return [expr {[string trim $user] != ""}]
}

# same_origin: the request came from a page of this server (Origin, else
# Referer, names this host). Neither header: refused.
proc same_origin {} {
    set scheme http
    if {[envget REQUEST_SCHEME] == "https" || [string tolower [envget HTTPS]] == "on"} {
        set scheme https
    }
    set self "$scheme://[envget HTTP_HOST]"
    if {[envget HTTP_HOST] == ""} {
        return 0
    }
    set origin [envget HTTP_ORIGIN]
    if {$origin != ""} {
        return [expr {[string compare $origin $self] == 0}]
    }
    set referer [envget HTTP_REFERER]
    return [expr {[string first "$self/" $referer] == 0}]
}

set dir "[root]/usr/local/etc/config/addons/hubtunnel"
set rc "[root]/usr/local/etc/config/rc.d/hubtunnel"

array set q [query]
set sid ""
if {[info exists q(sid)]} {
    # The query is not decoded, but a sid's @s may come as %40 (a browser
    # or a link that encodes them; index.html passes the address on as it
    # got it): the panel, which decodes its query, takes them so too.
    regsub -all {%40} $q(sid) @ sid
}
if {![session_ok $sid]} {
    refuse "403 Forbidden" \
        "Keine g&uuml;ltige Sitzung: bitte &uuml;ber die WebUI &ouml;ffnen (Einstellungen &gt; Systemsteuerung &gt; hubtunnel)." \
        "No valid session: please open this page from the WebUI (Settings &gt; Control panel &gt; hubtunnel)."
}
set esid [html $sid]

set started ""
if {[envget REQUEST_METHOD] == "POST"} {
    if {![same_origin]} {
        refuse "403 Forbidden" \
            "Abgelehnt: die Anfrage kam nicht von dieser Zentrale." \
            "Refused: the request did not come from this hub's pages."
    }
    # The body (action=start) is not needed: this page has one button.
    set failed [catch {exec sh $rc start} out]
    if {$failed} {
        set started "<p class=\"err\"><b>Start fehlgeschlagen / start failed:</b></p>\n<pre>[html [string trim $out]]</pre>\n"
    } else {
        set started "<p><b>Gestartet / started.</b> <a href=\"./?sid=$esid\">Weiter zu den Einstellungen / on to the settings</a></p>\n"
    }
}

# What the supervisor and the agent left behind.
array set st {restarts 0 last_exit "" last_crash "" given_up 0}
foreach line [split [readfile "$dir/supervisor.state" 2000] \n] {
    if {[regexp {^(restarts|last_exit|last_crash|given_up)=([A-Za-z0-9 ]*)$} $line all k v]} {
        set st($k) $v
    }
}
set why [string trim [readfile "$dir/start-error" 2000]]
set configured [file exists "$dir/hubtunnel.toml"]

set running 0
set pid [string trim [readfile "[root]/var/run/hubtunnel.pid" 20]]
if {[regexp {^[0-9]+$} $pid] && [file exists "/proc/$pid"]} {
    set running 1
}

set body "<h1>hubtunnel</h1>\n$started"
if {$running} {
    append body "<p lang=\"de\">Der Dienst l&auml;uft, aber seine Einstellungen antworten nicht (noch beim Starten?). <a href=\"./?sid=$esid\">Erneut versuchen</a></p>\n"
    append body "<p lang=\"en\" class=\"en\">The service runs but its settings do not answer (still starting?). <a href=\"./?sid=$esid\">Try again</a></p>\n"
} else {
    append body "<p lang=\"de\">Der Dienst hubtunnel l&auml;uft nicht.</p>\n<p lang=\"en\" class=\"en\">The hubtunnel service is not running.</p>\n"
}
if {$why != ""} {
    append body "<h2>Warum / why</h2>\n<p lang=\"de\">Beim letzten Start meldete er:</p><p lang=\"en\" class=\"en\">At its last start it said:</p>\n<pre id=\"start-error\">[html $why]</pre>\n"
}
if {$st(given_up) == "1"} {
    set when ""
    if {[regexp {^[0-9]+$} $st(last_crash)]} {
        set when [clock format $st(last_crash) -format "%Y-%m-%d %H:%M:%S"]
    }
    append body "<p id=\"given-up\" lang=\"de\">Er ist wiederholt abgest&uuml;rzt (zuletzt [html $when], [html $st(last_exit)]) und wird nicht mehr von selbst neu gestartet.</p>\n"
    append body "<p lang=\"en\" class=\"en\">It crashed repeatedly (last at [html $when], [html $st(last_exit)]) and is no longer restarted by itself.</p>\n"
} elseif {$st(restarts) != "0" && $st(restarts) != ""} {
    append body "<p lang=\"de\">Nach Abst&uuml;rzen neu gestartet: [html $st(restarts)] mal (zuletzt: [html $st(last_exit)]).</p>\n<p lang=\"en\" class=\"en\">Restarted after crashes: [html $st(restarts)] times (last: [html $st(last_exit)]).</p>\n"
}
if {!$configured} {
    append body "<p lang=\"de\">Noch nicht eingerichtet: der Start legt die Grundeinstellungen an.</p>\n<p lang=\"en\" class=\"en\">Not set up yet: starting writes the default settings.</p>\n"
}
if {!$running} {
    append body "<form method=\"post\" action=\"status.cgi?sid=$esid\"><input type=\"hidden\" name=\"action\" value=\"start\"><button type=\"submit\" id=\"start\">Starten / Start</button></form>\n"
}
reply "200 OK" [page hubtunnel $body]
