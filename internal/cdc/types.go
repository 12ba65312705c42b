package cdc

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// kind is how a column's PostgreSQL text value becomes JSON, following
// Debezium's JsonConverter output for the type.
type kind uint8

const (
	kindString      kind = iota // text types and anything unknown: a JSON string
	kindInt                     // int2/int4/int8/oid: a JSON number
	kindFloat                   // float4/float8: a JSON number ("NaN" etc. as strings)
	kindBool                    // boolean
	kindNumeric                 // numeric, per decimal.handling.mode
	kindMoney                   // money: a decimal with scale 2
	kindUUID                    // io.debezium.data.Uuid
	kindJSON                    // io.debezium.data.Json: the document as a string
	kindXML                     // io.debezium.data.Xml
	kindTimestampTZ             // io.debezium.time.ZonedTimestamp: ISO-8601 in UTC
	kindTimestamp               // io.debezium.time.MicroTimestamp (Timestamp for precision <= 3)
	kindDate                    // io.debezium.time.Date: days since the epoch
	kindTime                    // io.debezium.time.MicroTime (Time for precision <= 3)
	kindTimeTZ                  // io.debezium.time.ZonedTime: ISO-8601 time in UTC
	kindInterval                // io.debezium.time.MicroDuration or an ISO-8601 string
	kindBytes                   // bytea: base64 (binary.handling.mode)
	kindArray                   // one-dimensional arrays of the above
	kindEnum                    // io.debezium.data.Enum: the label as a string
	kindBits                    // io.debezium.data.Bits (bit(n), varbit(n) with n > 1)
	kindBit                     // bit(1) and varbit(1): a boolean, as Debezium writes them
	kindLtree                   // io.debezium.data.Ltree
	kindHstore                  // hstore: io.debezium.data.Json (hstore.handling.mode=json) or a map
)

// PostgreSQL built-in type OIDs the encoders know.
const (
	oidBool        = 16
	oidBytea       = 17
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidXML         = 142
	oidFloat4      = 700
	oidFloat8      = 701
	oidMoney       = 790
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestampTZ = 1184
	oidInterval    = 1186
	oidTimeTZ      = 1266
	oidBit         = 1560
	oidVarbit      = 1562
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

// column is one captured column and how to encode it.
type column struct {
	name     string
	jsonName []byte // `"name":`, escaped once
	typeName string
	kind     kind
	typmod   int32
	// millis marks timestamp/time columns of precision <= 3 (Debezium's
	// adaptive mode writes milliseconds for them).
	millis bool
	// connect marks time.precision.mode=connect temporal columns.
	connect   bool
	scale     int // numeric scale; -1 when unconstrained
	precision int
	// width is the fractional-second digits a timestamptz is written with
	// (the column's precision, 6 when unconstrained): ZonedTimestamp pads
	// its fraction to it since Debezium 2.2 (DBZ-5996).
	width int
	// bits is the declared length of a bit/varbit column (MaxInt32 for an
	// unbounded varbit), Bits' "length" parameter.
	bits     int
	optional bool
	elem     *column // array element
	// enumLabels are an enum type's labels in sort order, comma-separated:
	// the "allowed" parameter of io.debezium.data.Enum.
	enumLabels string
	// skip marks a column left out of row images: excluded by
	// column.include.list/column.exclude.list, or of a type Debezium does
	// not convert (it omits those columns too).
	skip bool
	// mask and truncate are column.mask.with.N.chars and
	// column.truncate.to.N.chars for this column (-1 when not set).
	mask, truncate int
}

func kindOf(oid uint32) kind {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID:
		return kindInt
	case oidFloat4, oidFloat8:
		return kindFloat
	case oidBool:
		return kindBool
	case oidNumeric:
		return kindNumeric
	case oidMoney:
		return kindMoney
	case oidUUID:
		return kindUUID
	case oidJSON, oidJSONB:
		return kindJSON
	case oidXML:
		return kindXML
	case oidTimestampTZ:
		return kindTimestampTZ
	case oidTimestamp:
		return kindTimestamp
	case oidDate:
		return kindDate
	case oidTime:
		return kindTime
	case oidTimeTZ:
		return kindTimeTZ
	case oidInterval:
		return kindInterval
	case oidBytea:
		return kindBytes
	case oidBit, oidVarbit:
		return kindBits
	}
	return kindString
}

// newColumn describes a column of base type oid with modifier typmod;
// elemOID is the element type of an array (0 otherwise).
func newColumn(name string, oid uint32, typmod int32, typeName string, elemOID uint32, optional bool, cfg *Config) *column {
	c := &column{name: name, typeName: typeName, typmod: typmod, optional: optional, scale: -1, mask: -1, truncate: -1}
	c.jsonName = appendJSONString(nil, name)
	c.jsonName = append(c.jsonName, ':')
	if elemOID != 0 {
		c.kind = kindArray
		c.elem = newColumn(name, elemOID, typmod, strings.TrimPrefix(typeName, "_"), 0, true, cfg)
		return c
	}
	c.kind = kindOf(oid)
	if c.kind == kindString && typeName == "ltree" {
		c.kind = kindLtree
	}
	if c.kind == kindString && typeName == "hstore" {
		c.kind = kindHstore
	}
	switch c.kind {
	case kindTimestampTZ:
		c.width = 6
		if typmod >= 0 {
			c.width = int(typmod)
		}
	case kindBits:
		// Debezium: a column of length 1 is a boolean, longer ones Bits.
		c.bits = int(typmod)
		if typmod < 0 {
			c.bits = math.MaxInt32
		}
		if c.bits == 1 {
			c.kind = kindBit
		}
	case kindNumeric:
		if typmod >= 4 {
			c.precision = int(((typmod - 4) >> 16) & 0xffff)
			c.scale = int((typmod - 4) & 0xffff)
		}
	case kindMoney:
		c.scale = cfg.MoneyFractionDigits
	case kindTimestamp, kindTime:
		// typmod is the fractional-second precision; -1 means 6.
		c.millis = typmod >= 0 && typmod <= 3 && cfg.TimePrecisionMode == "adaptive"
		// time.precision.mode=connect: Kafka Connect's own Timestamp and
		// Time, milliseconds whatever the column's precision.
		c.connect = cfg.TimePrecisionMode == "connect"
		c.millis = c.millis || c.connect
	case kindDate:
		c.connect = cfg.TimePrecisionMode == "connect"
	}
	return c
}

// encoder turns text-format PostgreSQL values into Debezium JSON.
type encoder struct {
	cfg *Config
	big big.Int
}

// appendValue writes column c's value given in PostgreSQL text format.
func (e *encoder) appendValue(buf []byte, c *column, v []byte) []byte {
	switch c.kind {
	case kindInt:
		return append(buf, v...)
	case kindBool:
		if len(v) > 0 && v[0] == 't' {
			return append(buf, "true"...)
		}
		return append(buf, "false"...)
	case kindFloat:
		if _, err := strconv.ParseFloat(string(v), 64); err != nil || isNonFinite(v) {
			return appendJSONBytes(buf, v)
		}
		return append(buf, v...)
	case kindNumeric, kindMoney:
		return e.appendDecimal(buf, c, v)
	case kindTimestampTZ:
		return appendZonedTimestamp(buf, v, c.width)
	case kindTimestamp:
		micros, ok := parseTimestampMicros(v)
		if !ok {
			return appendJSONBytes(buf, v)
		}
		if c.millis {
			return strconv.AppendInt(buf, floorDiv(micros, 1000), 10)
		}
		return strconv.AppendInt(buf, micros, 10)
	case kindDate:
		t, err := time.Parse("2006-01-02", string(v))
		if err != nil {
			return appendJSONBytes(buf, v)
		}
		return strconv.AppendInt(buf, int64(math.Floor(float64(t.Unix())/86400)), 10)
	case kindTime:
		micros, ok := parseTimeOfDay(v)
		if !ok {
			return appendJSONBytes(buf, v)
		}
		if c.millis {
			return strconv.AppendInt(buf, micros/1000, 10)
		}
		return strconv.AppendInt(buf, micros, 10)
	case kindTimeTZ:
		return appendZonedTime(buf, v)
	case kindInterval:
		return e.appendInterval(buf, v)
	case kindBytes:
		return e.appendBytes(buf, v)
	case kindArray:
		return e.appendArray(buf, c, v)
	case kindBit:
		if len(v) > 0 && v[0] == '1' {
			return append(buf, "true"...)
		}
		return append(buf, "false"...)
	case kindBits:
		return appendBits(buf, v)
	case kindHstore:
		obj, ok := hstoreJSON(v)
		if !ok {
			return appendJSONBytes(buf, v)
		}
		if e.cfg.HstoreHandling == "map" {
			return append(buf, obj...)
		}
		return appendJSONBytes(buf, obj)
	}
	return appendJSONBytes(buf, v)
}

// hstoreJSON turns hstore's text form (`"a"=>"1", "b"=>NULL`) into a JSON
// object, as Debezium's convertHstoreToJsonString writes it.
func hstoreJSON(v []byte) ([]byte, bool) {
	s := string(v)
	out := []byte{'{'}
	readQuoted := func() (string, bool) {
		if len(s) == 0 || s[0] != '"' {
			return "", false
		}
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return "", false
		}
		s = s[i+1:]
		return b.String(), true
	}
	first := true
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), ",")) {
		k, ok := readQuoted()
		if !ok {
			return nil, false
		}
		s = strings.TrimSpace(s)
		if !strings.HasPrefix(s, "=>") {
			return nil, false
		}
		s = strings.TrimSpace(s[2:])
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendJSONString(out, k)
		out = append(out, ':')
		if strings.HasPrefix(s, "NULL") {
			out = append(out, "null"...)
			s = s[4:]
			continue
		}
		val, ok := readQuoted()
		if !ok {
			return nil, false
		}
		out = appendJSONString(out, val)
	}
	return append(out, '}'), true
}

// appendBits writes a bit string ("0101") as Debezium's Bits: the bits as a
// little-endian bit set (the rightmost character is bit 0) in as few bytes
// as the highest set bit needs, base64 in JSON.
func appendBits(buf []byte, v []byte) []byte {
	n := len(v)
	highest := -1
	for i := n - 1; i >= 0; i-- {
		if v[i] == '1' {
			highest = n - 1 - i
		}
	}
	raw := make([]byte, (highest+8)/8)
	for i := 0; i < n; i++ {
		if v[i] == '1' {
			bit := n - 1 - i
			raw[bit/8] |= 1 << (bit % 8)
		}
	}
	buf = append(buf, '"')
	buf = base64.StdEncoding.AppendEncode(buf, raw)
	return append(buf, '"')
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func isNonFinite(v []byte) bool {
	s := string(v)
	return s == "NaN" || s == "Infinity" || s == "-Infinity"
}

// appendDecimal writes a numeric per decimal.handling.mode: precise is
// Kafka Connect's Decimal (base64 of the unscaled two's-complement
// big-endian integer), or Debezium's VariableScaleDecimal struct when the
// column has no fixed scale.
func (e *encoder) appendDecimal(buf []byte, c *column, v []byte) []byte {
	if c.kind == kindMoney {
		v = cleanMoney(v)
	}
	if string(v) == "NaN" || string(v) == "Infinity" || string(v) == "-Infinity" {
		if e.cfg.DecimalHandling == DecimalString {
			return appendJSONBytes(buf, v)
		}
		if e.cfg.DecimalHandling == DecimalDouble {
			return appendJSONBytes(buf, v)
		}
		return append(buf, "null"...)
	}
	switch e.cfg.DecimalHandling {
	case DecimalString:
		return appendJSONBytes(buf, v)
	case DecimalDouble:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return appendJSONBytes(buf, v)
		}
		return appendFloat(buf, f)
	}
	digits, scale, ok := splitDecimal(v)
	if !ok {
		return appendJSONBytes(buf, v)
	}
	if c.scale >= 0 && scale < c.scale {
		digits += strings.Repeat("0", c.scale-scale)
		scale = c.scale
	}
	if c.scale < 0 {
		// VariableScaleDecimal strips trailing zeros, never below scale 0
		// (PostgresValueConverter.convertDecimal: stripTrailingZeros, then
		// setScale(0) when negative): 1.50 is {"scale":1,"value":"Dw=="}.
		for scale > 0 && len(digits) > 1 && digits[len(digits)-1] == '0' {
			digits = digits[:len(digits)-1]
			scale--
		}
	}
	if _, ok := e.big.SetString(digits, 10); !ok {
		return appendJSONBytes(buf, v)
	}
	raw := twosComplement(&e.big)
	if c.scale < 0 {
		buf = append(buf, `{"scale":`...)
		buf = strconv.AppendInt(buf, int64(scale), 10)
		buf = append(buf, `,"value":"`...)
		buf = base64.StdEncoding.AppendEncode(buf, raw)
		return append(buf, `"}`...)
	}
	buf = append(buf, '"')
	buf = base64.StdEncoding.AppendEncode(buf, raw)
	return append(buf, '"')
}

// cleanMoney strips currency symbols and group separators from money's
// locale-dependent text form.
func cleanMoney(v []byte) []byte {
	out := make([]byte, 0, len(v))
	neg := false
	for _, b := range v {
		switch {
		case b >= '0' && b <= '9', b == '.':
			out = append(out, b)
		case b == '-' || b == '(':
			neg = true
		}
	}
	if neg {
		out = append([]byte{'-'}, out...)
	}
	return out
}

// splitDecimal returns the unscaled digits (with sign) and the scale.
func splitDecimal(v []byte) (string, int, bool) {
	s := string(v)
	if s == "" {
		return "", 0, false
	}
	dot := strings.IndexByte(s, '.')
	if dot < 0 {
		return s, 0, true
	}
	return s[:dot] + s[dot+1:], len(s) - dot - 1, true
}

// twosComplement is Java's BigInteger.toByteArray: the minimal big-endian
// two's-complement encoding.
func twosComplement(x *big.Int) []byte {
	switch x.Sign() {
	case 0:
		return []byte{0}
	case 1:
		b := x.Bytes()
		if b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	// n bytes hold values down to -2^(8n-1).
	n := (new(big.Int).Neg(x).Sub(new(big.Int).Neg(x), big.NewInt(1)).BitLen())/8 + 1
	mod := new(big.Int).Lsh(big.NewInt(1), uint(8*n))
	b := new(big.Int).Add(mod, x).Bytes()
	for len(b) < n {
		b = append([]byte{0xff}, b...)
	}
	return b
}

func appendFloat(buf []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.AppendQuote(buf, strconv.FormatFloat(f, 'g', -1, 64))
	}
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return strconv.AppendFloat(buf, f, 'e', -1, 64)
	}
	return strconv.AppendFloat(buf, f, 'f', -1, 64)
}

// appendZonedTimestamp turns "2024-01-02 03:04:05.12+00" (the walsender runs
// with TimeZone=UTC) into Debezium's ZonedTimestamp: ISO-8601 in UTC with
// the fraction padded to width digits, "2024-01-02T03:04:05.120000Z" for a
// timestamptz(6) (ZonedTimestamp.toIsoString with the column's fractional
// width since 2.2, DBZ-5996); width 0 uses ISO_OFFSET_DATE_TIME, which
// prints only the significant fraction digits. infinity stays "infinity".
func appendZonedTimestamp(buf []byte, v []byte, width int) []byte {
	s := string(v)
	if strings.HasSuffix(s, "+00") && len(s) >= 22 && s[10] == ' ' && s[4] == '-' && !strings.HasSuffix(s, " BC+00") {
		buf = append(buf, '"')
		buf = append(buf, s[:10]...)
		buf = append(buf, 'T')
		buf = appendFraction(buf, s[11:len(s)-3], width)
		return append(buf, `Z"`...)
	}
	t, err := time.Parse("2006-01-02 15:04:05.999999Z07", s)
	if err != nil {
		t, err = time.Parse("2006-01-02 15:04:05.999999Z07:00", s)
	}
	if err != nil {
		return appendJSONBytes(buf, v)
	}
	t = t.UTC()
	buf = append(buf, '"')
	buf = t.AppendFormat(buf, "2006-01-02T")
	buf = appendFraction(buf, t.Format("15:04:05.999999"), width)
	return append(buf, `Z"`...)
}

// appendFraction writes "hh:mm:ss[.fff]" with the fraction padded (or
// trimmed) to width digits; width <= 0 keeps only significant digits, as
// Java's ISO formatters do ("05.120" -> "05.12", "05.000" -> "05").
func appendFraction(buf []byte, hms string, width int) []byte {
	if width <= 0 || width > 9 {
		return append(buf, trimFraction(hms)...)
	}
	whole, frac, _ := strings.Cut(hms, ".")
	buf = append(buf, whole...)
	buf = append(buf, '.')
	if len(frac) > width {
		frac = frac[:width]
	}
	buf = append(buf, frac...)
	for i := len(frac); i < width; i++ {
		buf = append(buf, '0')
	}
	return buf
}

// trimFraction drops trailing zeros of a fractional second, as Java's ISO
// formatter does ("05.120" -> "05.12", "05.000" -> "05").
func trimFraction(hms string) string {
	dot := strings.IndexByte(hms, '.')
	if dot < 0 {
		return hms
	}
	end := len(hms)
	for end > dot+1 && hms[end-1] == '0' {
		end--
	}
	if end == dot+1 {
		end = dot
	}
	return hms[:end]
}

// PostgreSQL JDBC's PGStatement.DATE_POSITIVE_INFINITY and
// DATE_NEGATIVE_INFINITY: what Debezium writes for timestamp 'infinity' and
// '-infinity' (AbstractRecordsProducerTest: ts_pinf, ts_ninf).
const (
	pgPositiveInfinity = 9223372036825200000
	pgNegativeInfinity = -9223372036832400000
)

// parseTimestampMicros reads a timestamp without time zone as microseconds
// since the epoch.
func parseTimestampMicros(v []byte) (int64, bool) {
	s := string(v)
	switch s {
	case "infinity":
		return pgPositiveInfinity, true
	case "-infinity":
		return pgNegativeInfinity, true
	}
	t, err := time.Parse("2006-01-02 15:04:05.999999", s)
	return t.UnixMicro(), err == nil
}

// parseTimeOfDay returns microseconds since midnight of "15:04:05[.ffffff]".
func parseTimeOfDay(v []byte) (int64, bool) {
	s := string(v)
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, false
	}
	h, err1 := strconv.Atoi(s[0:2])
	m, err2 := strconv.Atoi(s[3:5])
	sec, err3 := strconv.Atoi(s[6:8])
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, false
	}
	micros := int64(h*3600+m*60+sec) * 1_000_000
	if len(s) > 9 && s[8] == '.' {
		frac := s[9:]
		if len(frac) > 6 {
			frac = frac[:6]
		}
		f, err := strconv.Atoi(frac + strings.Repeat("0", 6-len(frac)))
		if err != nil {
			return 0, false
		}
		micros += int64(f)
	}
	return micros, true
}

// appendZonedTime writes a timetz as an ISO-8601 UTC time ("13:04:05.5Z").
func appendZonedTime(buf []byte, v []byte) []byte {
	s := string(v)
	i := strings.LastIndexAny(s, "+-")
	if i < 8 {
		return appendJSONBytes(buf, v)
	}
	micros, ok := parseTimeOfDay([]byte(s[:i]))
	if !ok {
		return appendJSONBytes(buf, v)
	}
	offset := s[i+1:]
	parts := strings.Split(offset, ":")
	var offSec int64
	mult := []int64{3600, 60, 1}
	for j, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || j > 2 {
			return appendJSONBytes(buf, v)
		}
		offSec += int64(n) * mult[j]
	}
	if s[i] == '+' {
		micros -= offSec * 1_000_000
	} else {
		micros += offSec * 1_000_000
	}
	day := int64(86400 * 1_000_000)
	micros = ((micros % day) + day) % day
	t := time.UnixMicro(micros).UTC()
	buf = append(buf, '"')
	buf = append(buf, trimFraction(t.Format("15:04:05.000000"))...)
	return append(buf, `Z"`...)
}

// appendInterval writes an interval as Debezium's MicroDuration (months
// counted as 30.4375 days, as Debezium does) or, in string mode, ISO-8601.
func (e *encoder) appendInterval(buf []byte, v []byte) []byte {
	var iv pgtype.Interval
	if err := iv.Scan(string(v)); err != nil || !iv.Valid {
		return appendJSONBytes(buf, v)
	}
	if e.cfg.IntervalHandling == "string" {
		return strconv.AppendQuote(buf, isoDuration(iv))
	}
	const dayMicros = 86400 * 1_000_000
	micros := int64(float64(iv.Months)*30.4375*dayMicros) + int64(iv.Days)*dayMicros + iv.Microseconds
	return strconv.AppendInt(buf, micros, 10)
}

// isoDuration is Debezium's Interval.toIsoString: P<y>Y<m>M<d>DT<h>H<m>M<s>S
// with the seconds' fraction as short as it goes ("P1Y2M3DT4H5M6.78S").
func isoDuration(iv pgtype.Interval) string {
	years, months := iv.Months/12, iv.Months%12
	us := iv.Microseconds
	neg := us < 0
	if neg {
		us = -us
	}
	h, m := us/3_600_000_000, (us/60_000_000)%60
	sec, frac := (us/1_000_000)%60, us%1_000_000
	secs := strconv.FormatInt(sec, 10)
	if frac != 0 {
		secs += strings.TrimRight("."+strconv.FormatInt(frac+1_000_000, 10)[1:], "0")
	}
	sign := ""
	if neg {
		sign = "-"
	}
	return "P" + strconv.Itoa(int(years)) + "Y" + strconv.Itoa(int(months)) + "M" + strconv.Itoa(int(iv.Days)) + "DT" +
		sign + strconv.FormatInt(h, 10) + "H" + sign + strconv.FormatInt(m, 10) + "M" + sign + secs + "S"
}

// appendBytes writes bytea ("\x0a0b" hex text form) per binary.handling.mode.
func (e *encoder) appendBytes(buf []byte, v []byte) []byte {
	var raw []byte
	if len(v) >= 2 && v[0] == '\\' && v[1] == 'x' {
		raw = make([]byte, hex.DecodedLen(len(v)-2))
		if _, err := hex.Decode(raw, v[2:]); err != nil {
			return appendJSONBytes(buf, v)
		}
	} else {
		raw = v // escape format is not what the walsender sends with bytea_output=hex
	}
	buf = append(buf, '"')
	switch e.cfg.BinaryHandling {
	case "hex":
		buf = hex.AppendEncode(buf, raw)
	case "base64-url-safe":
		buf = base64.URLEncoding.AppendEncode(buf, raw)
	default:
		buf = base64.StdEncoding.AppendEncode(buf, raw)
	}
	return append(buf, '"')
}

// appendArray writes a one-dimensional array literal ("{1,2}", `{"a b",NULL}`)
// as a JSON array of encoded elements; anything else stays a string.
func (e *encoder) appendArray(buf []byte, c *column, v []byte) []byte {
	elems, ok := parseArray(string(v))
	if !ok {
		return appendJSONBytes(buf, v)
	}
	buf = append(buf, '[')
	for i, el := range elems {
		if i > 0 {
			buf = append(buf, ',')
		}
		if el == nil {
			buf = append(buf, "null"...)
			continue
		}
		buf = e.appendValue(buf, c.elem, []byte(*el))
	}
	return append(buf, ']')
}

func parseArray(s string) ([]*string, bool) {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, false
	}
	body := s[1 : len(s)-1]
	var out []*string
	if body == "" {
		return out, true
	}
	for i := 0; i <= len(body); {
		if i < len(body) && body[i] == '{' {
			return nil, false // multi-dimensional
		}
		var el strings.Builder
		quoted := false
		if i < len(body) && body[i] == '"' {
			quoted = true
			i++
			for i < len(body) && body[i] != '"' {
				if body[i] == '\\' && i+1 < len(body) {
					i++
				}
				el.WriteByte(body[i])
				i++
			}
			i++ // closing quote
		} else {
			for i < len(body) && body[i] != ',' {
				el.WriteByte(body[i])
				i++
			}
		}
		str := el.String()
		if !quoted && str == "NULL" {
			out = append(out, nil)
		} else {
			out = append(out, &str)
		}
		if i < len(body) && body[i] != ',' {
			return nil, false
		}
		i++
	}
	return out, true
}

// schemaJSON is the Kafka Connect schema of column c (for schemas.enable=true).
func (c *column) schemaJSON(cfg *Config, field bool) []byte {
	var typ, name string
	version := 0
	var params []byte
	switch c.kind {
	case kindInt:
		typ = "int32"
		switch c.typeName {
		case "int2":
			typ = "int16"
		case "int8", "oid":
			typ = "int64"
		}
	case kindFloat:
		typ = "double"
		if c.typeName == "float4" {
			typ = "float"
		}
	case kindBool:
		typ = "boolean"
	case kindNumeric, kindMoney:
		switch {
		case cfg.DecimalHandling == DecimalString:
			typ = "string"
		case cfg.DecimalHandling == DecimalDouble:
			typ = "double"
		case c.scale < 0:
			typ, name, version = "struct", "io.debezium.data.VariableScaleDecimal", 1
		default:
			typ, name, version = "bytes", "org.apache.kafka.connect.data.Decimal", 1
			params = []byte(`{"scale":"` + strconv.Itoa(c.scale) + `"`)
			if c.precision > 0 {
				params = append(params, `,"connect.decimal.precision":"`+strconv.Itoa(c.precision)+`"`...)
			}
			params = append(params, '}')
		}
	case kindUUID:
		typ, name, version = "string", "io.debezium.data.Uuid", 1
	case kindJSON:
		typ, name, version = "string", "io.debezium.data.Json", 1
	case kindXML:
		typ, name, version = "string", "io.debezium.data.Xml", 1
	case kindTimestampTZ:
		typ, name, version = "string", "io.debezium.time.ZonedTimestamp", 1
	case kindTimestamp:
		typ, name, version = "int64", "io.debezium.time.MicroTimestamp", 1
		if c.connect {
			name = "org.apache.kafka.connect.data.Timestamp"
		} else if c.millis {
			name = "io.debezium.time.Timestamp"
		}
	case kindDate:
		typ, name, version = "int32", "io.debezium.time.Date", 1
		if c.connect {
			name = "org.apache.kafka.connect.data.Date"
		}
	case kindTime:
		typ, name, version = "int64", "io.debezium.time.MicroTime", 1
		if c.connect {
			typ, name = "int32", "org.apache.kafka.connect.data.Time"
		} else if c.millis {
			typ, name = "int32", "io.debezium.time.Time"
		}
	case kindTimeTZ:
		typ, name, version = "string", "io.debezium.time.ZonedTime", 1
	case kindInterval:
		typ, name, version = "int64", "io.debezium.time.MicroDuration", 1
		if cfg.IntervalHandling == "string" {
			typ, name = "string", "io.debezium.time.Interval"
		}
	case kindBytes:
		typ = "bytes"
		if cfg.BinaryHandling != "bytes" {
			typ = "string"
		}
	case kindArray:
		typ = "array"
	case kindEnum:
		// io.debezium.data.Enum.builder(labels): the labels in sort order.
		typ, name, version = "string", "io.debezium.data.Enum", 1
		params = appendJSONString([]byte(`{"allowed":`), c.enumLabels)
		params = append(params, '}')
	case kindBit:
		typ = "boolean"
	case kindBits:
		typ, name, version = "bytes", "io.debezium.data.Bits", 1
		params = []byte(`{"length":"` + strconv.Itoa(c.bits) + `"}`)
	case kindLtree:
		typ, name, version = "string", "io.debezium.data.Ltree", 1
	case kindHstore:
		typ, name, version = "string", "io.debezium.data.Json", 1
		if cfg.HstoreHandling == "map" {
			typ, name, version = "map", "", 0
		}
	default:
		typ = "string"
	}
	b := []byte(`{"type":"` + typ + `"`)
	if typ == "map" {
		b = append(b, `,"keys":{"type":"string","optional":false},"values":{"type":"string","optional":true}`...)
	}
	if c.kind == kindArray {
		b = append(b, `,"items":`...)
		b = append(b, c.elem.schemaJSON(cfg, false)...)
	}
	if name == "io.debezium.data.VariableScaleDecimal" {
		b = append(b, `,"fields":[{"type":"int32","optional":false,"field":"scale"},{"type":"bytes","optional":false,"field":"value"}]`...)
	}
	b = append(b, `,"optional":`+strconv.FormatBool(c.optional)...)
	if name != "" {
		b = append(b, `,"name":"`+name+`"`...)
	}
	if version > 0 {
		b = append(b, `,"version":`+strconv.Itoa(version)...)
	}
	if name == "io.debezium.data.VariableScaleDecimal" {
		b = append(b, `,"doc":"Variable scaled decimal"`...)
	}
	if params != nil {
		b = append(b, `,"parameters":`...)
		b = append(b, params...)
	}
	if field {
		b = append(b, `,"field":`...)
		b = appendJSONString(b, c.name)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string.
func appendJSONString[T ~string | ~[]byte](buf []byte, s T) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch b {
			case '"':
				buf = append(buf, '\\', '"')
			case '\\':
				buf = append(buf, '\\', '\\')
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

func appendJSONBytes(buf []byte, v []byte) []byte {
	return appendJSONString(buf, v)
}

// appendUnavailable writes the value Debezium puts in place of an unchanged
// TOASTed column it did not receive: unavailable.value.placeholder as a
// string, its bytes for bytea in bytes mode, a one-element list for text,
// varchar and json arrays, and the placeholder's bytes as numbers for
// integer, bigint and date arrays (UnchangedToastedReplicationMessageColumn
// and UnchangedToastedPlaceholder in debezium-connector-postgres).
func (e *encoder) appendUnavailable(buf []byte, c *column) []byte {
	ph := e.cfg.UnavailablePlaceholder
	switch c.kind {
	case kindBytes:
		if e.cfg.BinaryHandling == "bytes" {
			buf = append(buf, '"')
			buf = base64.StdEncoding.AppendEncode(buf, ph)
			return append(buf, '"')
		}
	case kindArray:
		switch c.elem.typeName {
		case "text", "varchar", "json", "jsonb":
			buf = append(buf, '[')
			buf = appendJSONString(buf, ph)
			return append(buf, ']')
		case "int4", "int8", "date":
			buf = append(buf, '[')
			for i, b := range ph {
				if i > 0 {
					buf = append(buf, ',')
				}
				buf = strconv.AppendInt(buf, int64(int8(b)), 10) // Java's (int) of a signed byte
			}
			return append(buf, ']')
		}
	}
	return appendJSONString(buf, ph)
}

// applyColumnMappers applies column.truncate.to.N.chars and
// column.mask.with.N.chars to a character column's text value (Debezium's
// TruncateStrings and MaskStrings; lengths count UTF-16 code units, as Java
// strings do).
func applyColumnMappers(c *column, v []byte) []byte {
	if c.truncate >= 0 {
		units, i := 0, 0
		for i < len(v) {
			r, size := utf8.DecodeRune(v[i:])
			n := 1
			if r > 0xFFFF {
				n = 2
			}
			if units+n > c.truncate {
				break
			}
			units += n
			i += size
		}
		v = v[:i]
	}
	if c.mask >= 0 {
		return []byte(strings.Repeat("*", c.mask))
	}
	return v
}

// textual reports whether a column holds character data, the columns
// Debezium's string column mappers apply to.
func (c *column) textual() bool {
	return c.kind == kindString && (c.typeName == "text" || c.typeName == "varchar" || c.typeName == "bpchar" ||
		c.typeName == "name" || c.typeName == "citext" || c.typeName == "")
}
