#!/bin/tclsh
# hm_addons.tcl - adds or removes one addon's button in the CCU control panel
# (Settings > Control panel), for the addon's update_script and uninstall.
#
#   tclsh hm_addons.tcl add    FILE ID URL NAME DESCRIPTION_DE DESCRIPTION_EN
#   tclsh hm_addons.tcl remove FILE ID
#
# FILE is /etc/config/hm_addons.cfg on a hub. The WebUI reads it as the
# result of Tcl's `array get`: ID followed by another `array get` list with
# ID, CONFIG_URL, CONFIG_NAME and CONFIG_DESCRIPTION {de {...} en {...}}
# (::HomeMatic::Addon::AddConfigPage and control_panel.cgi in the WebUI). The
# firmware's own Tcl package cannot be used here: it loads the ReGa and RPC
# libraries, and the original CCU3 firmware has no RemoveConfigPage
# (RaspberryMatic adds it in its patch 0034-WebUI-Addon-Config).
#
# The other addons' buttons are kept as they are; a file that does not parse
# is left untouched. Written for old Tcl (no dict, no {*}).

proc fail {msg} {
    puts stderr "hm_addons.tcl: $msg"
    exit 1
}

proc load {file} {
    if {![file exists $file]} {
        return {}
    }
    if {[catch {
        set fd [open $file r]
        set content [read $fd]
        close $fd
    } err]} {
        fail "cannot read $file: $err"
    }
    set content [string trim $content]
    if {[catch {array set probe $content} err]} {
        fail "$file is not a list of addon buttons, leaving it as it is: $err"
    }
    return $content
}

# save writes the file next to itself and renames it into place, so a power
# cut leaves either the old or the new list, never half of one.
proc save {file content} {
    if {[file exists $file] && [file type $file] == "link"} {
        # Someone made the file itself a link: write through it, in place.
        set tmp ""
        set target $file
    } else {
        set tmp "$file.tmp[pid]"
        set target $tmp
    }
    if {[catch {
        set fd [open $target w]
        puts -nonewline $fd $content
        close $fd
        if {$tmp != ""} {
            file rename -force $tmp $file
        }
    } err]} {
        if {$tmp != ""} {
            catch {file delete $tmp}
        }
        fail "cannot write $file: $err"
    }
}

set usage "usage: hm_addons.tcl add FILE ID URL NAME DESCRIPTION_DE DESCRIPTION_EN | remove FILE ID"
set op [lindex $argv 0]
set file [lindex $argv 1]
set id [lindex $argv 2]
if {$file == "" || $id == ""} {
    fail $usage
}

array set addons [load $file]

switch -- $op {
    add {
        if {[llength $argv] != 7} {
            fail $usage
        }
        set entry [list ID $id \
            CONFIG_URL [lindex $argv 3] \
            CONFIG_NAME [lindex $argv 4] \
            CONFIG_DESCRIPTION [list de [lindex $argv 5] en [lindex $argv 6]]]
        set addons($id) $entry
    }
    remove {
        if {[llength $argv] != 3} {
            fail $usage
        }
        if {![info exists addons($id)]} {
            exit 0
        }
        unset addons($id)
    }
    default {
        fail $usage
    }
}
save $file [array get addons]
