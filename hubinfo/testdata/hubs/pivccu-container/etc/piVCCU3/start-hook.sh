# stands in for piVCCU's pivccu/container3/start-hook.sh
