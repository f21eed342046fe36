#!/bin/tclsh
# update-check.cgi - tells the CCU which hubtunnel version is available.
# Served at /addons/hubtunnel/update-check.cgi; lighttpd runs *.cgi with
# /bin/tclsh (RaspberryMatic /etc/lighttpd/conf.d/cgi.conf).
#
# Who asks (RaspberryMatic):
#   cp_software.cgi (Settings > Additional software) fetches
#     ?cmd=check_version&version=<installed> and shows the answer as the
#     available version; its "Download" button opens ?cmd=download&version=...
#     in a new window.
#   /bin/checkAddonUpdates.sh (daily) fetches the URL with no query at all and
#     reports an update when the answer differs from the installed version
#     ("n/a" meaning: unknown).
# So every request that is not cmd=download gets the version word.
#
# The answer never goes to the network: the agent writes the newest version it
# learned from its relay into update-latest; this script only reads files.
# HUBTUNNEL_ROOT (unset on a hub) is put before every path, for tests.

proc root {} {
    global env
    if {[info exists env(HUBTUNNEL_ROOT)]} {
        return $env(HUBTUNNEL_ROOT)
    }
    return ""
}

# word returns the first line of file if it is a sane version word (lower
# case letters, digits and . + -, at most 40 characters), else "".
proc word {file} {
    if {[catch {
        set fd [open $file r]
        set content [read $fd 200]
        close $fd
    }]} {
        return ""
    }
    set content [string trim $content]
    if {[string length $content] > 40 || ![regexp {^[0-9a-z.+-]+$} $content]} {
        return ""
    }
    return $content
}

# The query string is split into key/value pairs kept in an array; it never
# names a variable of this script.
proc query {} {
    global env
    array set q {}
    if {[info exists env(QUERY_STRING)]} {
        foreach pair [split $env(QUERY_STRING) &] {
            set eq [string first = $pair]
            if {$eq > 0} {
                set q([string range $pair 0 [expr {$eq - 1}]]) [string range $pair [expr {$eq + 1}] end]
            }
        }
    }
    return [array get q]
}

set cmd ""
catch {
    array set q [query]
    if {[info exists q(cmd)]} {
        set cmd $q(cmd)
    }
}

if {$cmd == "download"} {
    # The panel is where an update is installed. Both a redirect and a
    # meta refresh: the window the WebUI opened follows either.
    puts -nonewline "Status: 302 Found\r\n"
    puts -nonewline "Location: /addons/hubtunnel/\r\n"
    puts -nonewline "Content-Type: text/html; charset=utf-8\r\n\r\n"
    puts -nonewline "<html><head><meta http-equiv=\"refresh\" content=\"0; url=/addons/hubtunnel/\"></head>"
    puts "<body><a href=\"/addons/hubtunnel/\">hubtunnel</a></body></html>"
    exit 0
}

set answer "n/a"
catch {
    set dir "[root]/usr/local/etc/config/addons/hubtunnel"
    set latest [word "$dir/update-latest"]
    if {$latest != ""} {
        set answer $latest
    } else {
        set installed [word "[root]/usr/local/addons/hubtunnel/VERSION"]
        if {$installed != ""} {
            set answer $installed
        }
    }
}
puts -nonewline "Content-Type: text/plain\r\n\r\n"
puts -nonewline $answer
