// xxHash (Debian libxxhash-dev): XXH3-128, the import identity's content hash (TickwireStore).
#include <xxhash.h>
