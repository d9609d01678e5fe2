// SQLite, the baseline the journal bench measures against (TickwireBench only).
#include <sqlite3.h>
