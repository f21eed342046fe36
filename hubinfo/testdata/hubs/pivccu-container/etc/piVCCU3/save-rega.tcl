# stands in for piVCCU's pivccu/container3/save-rega.tcl
