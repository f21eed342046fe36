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

# vparse splits a version word into its three numbers and its pre-release
# identifiers (semantic versioning, as the agent's version.Compare reads
# it; build metadata after + does not count); "" when it is no such word.
proc vparse {v} {
    set v [lindex [split $v +] 0]
    set dash [string first - $v]
    set pre {}
    if {$dash >= 0} {
        set pre [split [string range $v [expr {$dash + 1}] end] .]
        set v [string range $v 0 [expr {$dash - 1}]]
    }
    set core [split $v .]
    if {[llength $core] != 3} {
        return ""
    }
    foreach n $core {
        if {[string length $n] > 9 || ![regexp {^(0|[1-9][0-9]*)$} $n]} {
            return ""
        }
    }
    foreach id $pre {
        if {$id == ""} {
            return ""
        }
    }
    return [list $core $pre]
}

# newer reports whether version word a is newer than b (both parse). Only
# Tcl 8.0's commands: the CCU's tclsh is old.
proc newer {a b} {
    set va [vparse $a]
    set vb [vparse $b]
    set ca [lindex $va 0]
    set pa [lindex $va 1]
    set cb [lindex $vb 0]
    set pb [lindex $vb 1]
    foreach x $ca y $cb {
        if {$x != $y} {
            return [expr {$x > $y}]
        }
    }
    # A release is newer than its pre-releases.
    if {[llength $pa] == 0 || [llength $pb] == 0} {
        return [expr {[llength $pa] == 0 && [llength $pb] > 0}]
    }
    foreach x $pa y $pb {
        if {$x == ""} {
            return 0
        }
        if {$y == ""} {
            return 1
        }
        set nx [regexp {^[0-9]+$} $x]
        set ny [regexp {^[0-9]+$} $y]
        if {$nx && $ny} {
            if {$x != $y} {
                return [expr {$x > $y}]
            }
        } elseif {$nx != $ny} {
            return [expr {!$nx}]
        } elseif {[string compare $x $y] != 0} {
            return [expr {[string compare $x $y] > 0}]
        }
    }
    return 0
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

# refererSid is the WebUI session in the address of the page that sent the
# browser here (the WebUI's own page, /pages/index.htm?sid=@…@, on this
# same host), as @ + ten letters and digits + @; "" when there is none.
proc refererSid {} {
    global env
    set sid ""
    catch {
        set ref $env(HTTP_REFERER)
        set host [string tolower $env(HTTP_HOST)]
        if {[regexp {^https?://([^/?#]+)[^?#]*\?([^#]*)} $ref all rhost q] && [string tolower $rhost] == $host} {
            foreach pair [split $q &] {
                if {[regexp {^sid=(%40|@)?([A-Za-z0-9]+)(%40|@)?$} $pair all a id b] && [string length $id] == 10} {
                    set sid "@$id@"
                }
            }
        }
    }
    return $sid
}

if {$cmd == "download"} {
    # The panel's update section is where an update is installed. The
    # WebUI opens this in a new tab (openUrl('<Update>?cmd=download&...'),
    # RaspberryMatic patch occu/0063-WebUI-DownloadAddonsInNewTab) without
    # the session the panel needs; the WebUI page that opened it has it in
    # its address, which the browser sends as the Referer. The way goes
    # through the button's page (index.html), which leads to the panel or,
    # with the agent stopped, to status.cgi. Without a session the panel
    # says where to open it. Both a redirect and a meta refresh: the window
    # follows either.
    set to "/addons/hubtunnel/"
    set sid [refererSid]
    if {$sid != ""} {
        append to "?sid=$sid"
    }
    append to "#updates"
    puts -nonewline "Status: 302 Found\r\n"
    puts -nonewline "Location: $to\r\n"
    puts -nonewline "Content-Type: text/html; charset=utf-8\r\n\r\n"
    puts -nonewline "<html><head><meta http-equiv=\"refresh\" content=\"0; url=$to\"></head>"
    puts "<body><a href=\"$to\">hubtunnel</a></body></html>"
    exit 0
}

# The newest version the agent learned is offered only when it is newer
# than the installed one: the CCU shows any other answer as an update, and
# a relay may well hold an older release (or the agent learned it before
# the addon was updated by hand).
set answer "n/a"
catch {
    set dir "[root]/usr/local/etc/config/addons/hubtunnel"
    set latest [word "$dir/update-latest"]
    set installed [word "[root]/usr/local/addons/hubtunnel/VERSION"]
    if {$installed != "" && [vparse $installed] != ""} {
        set answer $installed
        if {$latest != "" && [vparse $latest] != "" && [newer $latest $installed]} {
            set answer $latest
        }
    } elseif {$installed != ""} {
        set answer $installed
    } elseif {$latest != ""} {
        set answer $latest
    }
}
puts -nonewline "Content-Type: text/plain\r\n\r\n"
puts -nonewline $answer
