# stands in for piVCCU's pivccu/container3/set_hb_rf_eth_connection_dp.tcl
