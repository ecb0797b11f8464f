# Source me: activates the project venv and the ROS 2 environment it carries.
_cct_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "${CCT_VENV:-$_cct_root/.venv}/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$_cct_root/config/fastdds_shm.xml}
unset _cct_root
