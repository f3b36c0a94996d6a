// The transport's settings, under the header's old name, for the files outside ps/ that
// still include it: include loom/ps/van_options.h instead. The ZeroMQ transport itself
// is loom/ps/zmq_van.h, private to ps/.
#pragma once

#include "loom/ps/van_options.h"
