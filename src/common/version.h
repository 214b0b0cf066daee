/* The version of craftd and craftctl (one number for both: they ship
 * together). */
#ifndef CRAFT_VERSION_H
#define CRAFT_VERSION_H

#ifndef CRAFT_VERSION
#define CRAFT_VERSION "0.1.0"
#endif

#endif
