/*
 * The request path of a client connection (see pipeline.c's header for its
 * stages).  A worker hands pipeline_ops to conn_new(): the connection then
 * reports to the pipeline, which drives it.
 */
#ifndef AIGATE_PIPELINE_H
#define AIGATE_PIPELINE_H

#include "aigate/net/conn.h"

extern const struct conn_ops pipeline_ops;

#endif
