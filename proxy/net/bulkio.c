/* Large reads and writes for bulk transfers (see bulkio.h). */
#include "aigate/net/bulkio.h"

#include <event2/bufferevent.h>

void
bulkio_set(struct bufferevent *bev)
{
    struct bufferevent *under = bufferevent_get_underlying(bev);
    bufferevent_set_max_single_read(bev, BULKIO_CHUNK);
    bufferevent_set_max_single_write(bev, BULKIO_CHUNK);
    if (under) {
        bufferevent_set_max_single_read(under, BULKIO_CHUNK);
        bufferevent_set_max_single_write(under, BULKIO_CHUNK);
    }
}
