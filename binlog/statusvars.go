package binlog

import (
	"encoding/binary"
	"fmt"
)

// StatusVars is the session state a query event was logged with: what a
// replay must set before running the statement so it means the same.
// Fields are nil when the event does not carry them.
type StatusVars struct {
	Flags2        *uint32    // option bits: autocommit, foreign/unique checks, sql_auto_is_null
	SQLMode       *uint64    // numeric sql_mode
	Charset       *[3]uint16 // character_set_client, collation_connection, collation_server
	TimeZone      *string
	LCTimeNames   *uint16
	CharsetDB     *uint16    // collation_database
	AutoIncrement *[2]uint16 // auto_increment_increment, auto_increment_offset
	Microseconds  *uint32    // fraction of the header's second (MySQL Q_MICROSECONDS, MariaDB Q_HRNOW)
}

// Flags2 bits a replay restores.
const (
	OptionAutoIsNull         = 1 << 14
	OptionNotAutocommit      = 1 << 19
	OptionNoForeignKeyChecks = 1 << 26
	OptionRelaxedUniqueCheck = 1 << 27
)

// ParseStatusVars decodes a query event's status variables. Codes are
// written in increasing order and a reader stops at the first it does not
// know, as the server itself does.
func ParseStatusVars(b []byte) (StatusVars, error) {
	var v StatusVars
	short := func(code byte) error {
		return fmt.Errorf("%w: query status variable %d overruns the event", ErrCorrupt, code)
	}
	for len(b) > 0 {
		code := b[0]
		b = b[1:]
		need := 0
		switch code {
		case 0: // Q_FLAGS2_CODE
			need = 4
			if len(b) >= need {
				x := binary.LittleEndian.Uint32(b)
				v.Flags2 = &x
			}
		case 1: // Q_SQL_MODE_CODE
			need = 8
			if len(b) >= need {
				x := binary.LittleEndian.Uint64(b)
				v.SQLMode = &x
			}
		case 2: // Q_CATALOG_CODE (old): length, string, NUL
			if len(b) < 1 {
				return v, short(code)
			}
			need = 1 + int(b[0]) + 1
		case 3: // Q_AUTO_INCREMENT
			need = 4
			if len(b) >= need {
				v.AutoIncrement = &[2]uint16{binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:])}
			}
		case 4: // Q_CHARSET_CODE
			need = 6
			if len(b) >= need {
				v.Charset = &[3]uint16{binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint16(b[4:])}
			}
		case 5: // Q_TIME_ZONE_CODE
			if len(b) < 1 {
				return v, short(code)
			}
			need = 1 + int(b[0])
			if len(b) >= need {
				s := string(b[1:need])
				v.TimeZone = &s
			}
		case 6: // Q_CATALOG_NZ_CODE
			if len(b) < 1 {
				return v, short(code)
			}
			need = 1 + int(b[0])
		case 7: // Q_LC_TIME_NAMES_CODE
			need = 2
			if len(b) >= need {
				x := binary.LittleEndian.Uint16(b)
				v.LCTimeNames = &x
			}
		case 8: // Q_CHARSET_DATABASE_CODE
			need = 2
			if len(b) >= need {
				x := binary.LittleEndian.Uint16(b)
				v.CharsetDB = &x
			}
		case 9: // Q_TABLE_MAP_FOR_UPDATE_CODE
			need = 8
		case 10: // Q_MASTER_DATA_WRITTEN_CODE
			need = 4
		case 11: // Q_INVOKER: user and host, each length-prefixed
			if len(b) < 1 {
				return v, short(code)
			}
			u := 1 + int(b[0])
			if len(b) < u+1 {
				return v, short(code)
			}
			need = u + 1 + int(b[u])
		case 12: // Q_UPDATED_DB_NAMES: count, then NUL-terminated names
			if len(b) < 1 {
				return v, short(code)
			}
			n, i := int(b[0]), 1
			if n != 254 { // OVER_MAX_DBS_IN_EVENT_MTS: no names follow
				for range n {
					for i < len(b) && b[i] != 0 {
						i++
					}
					if i >= len(b) {
						return v, short(code)
					}
					i++
				}
			}
			need = i
		case 13, 128: // Q_MICROSECONDS, MariaDB Q_HRNOW
			need = 3
			if len(b) >= need {
				x := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
				v.Microseconds = &x
			}
		case 16, 19, 20, 130: // explicit_defaults_for_timestamp, sql_require_primary_key, default_table_encryption, MariaDB Q_GTID_FLAGS3
			need = 1
		case 17, 129: // Q_DDL_LOGGED_WITH_XID, MariaDB Q_XID
			need = 8
		case 18: // Q_DEFAULT_COLLATION_FOR_UTF8MB4
			need = 2
		default:
			return v, nil
		}
		if len(b) < need {
			return v, short(code)
		}
		b = b[need:]
	}
	return v, nil
}
