# stands in for piVCCU's pivccu/container3/wait_sysvar_creation.tcl
