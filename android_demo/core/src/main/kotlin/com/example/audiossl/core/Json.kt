package com.example.audiossl.core

/** A JSON text is malformed, or a value is missing or of another type than expected. */
class JsonException(message: String) : RuntimeException(message)

/**
 * A parsed JSON object with typed accessors.
 *
 * Every accessor names the full path of a missing or mistyped value in its [JsonException]
 * (e.g. `manifest.model.patch_samples`), so a manifest that does not match the app fails
 * with a message that says where.
 *
 * @property path Where this object sits in the document, for error messages.
 * @property values The members, in document order.
 */
class JsonObject(val path: String, val values: Map<String, Any?>) {

  /** The member names, in document order. */
  val keys: Set<String> get() = values.keys

  private fun member(key: String): Any? {
    if (!values.containsKey(key)) throw JsonException("$path.$key: missing")
    return values[key]
  }

  private fun mistyped(key: String, expected: String): JsonException =
    JsonException("$path.$key: expected $expected, found ${describe(values[key])}")

  /** The object [key]. */
  fun obj(key: String): JsonObject {
    val value = member(key)
    @Suppress("UNCHECKED_CAST")
    return if (value is Map<*, *>) JsonObject("$path.$key", value as Map<String, Any?>)
    else throw mistyped(key, "an object")
  }

  /** The array [key], each element an object. */
  fun objects(key: String): List<JsonObject> {
    val value = member(key) as? List<*> ?: throw mistyped(key, "an array")
    return value.mapIndexed { i, element ->
      @Suppress("UNCHECKED_CAST")
      if (element is Map<*, *>) JsonObject("$path.$key[$i]", element as Map<String, Any?>)
      else throw JsonException("$path.$key[$i]: expected an object, found ${describe(element)}")
    }
  }

  /** The string [key]. */
  fun string(key: String): String = member(key) as? String ?: throw mistyped(key, "a string")

  /** Whether the member [key] is present (for optional values). */
  fun has(key: String): Boolean = values.containsKey(key)

  /** The boolean [key]. */
  fun boolean(key: String): Boolean = member(key) as? Boolean ?: throw mistyped(key, "a boolean")

  /** The integer [key] (a JSON number without fraction or exponent). */
  fun long(key: String): Long = member(key) as? Long ?: throw mistyped(key, "an integer")

  /** The integer [key] (a JSON number without fraction or exponent that fits an Int). */
  fun int(key: String): Int {
    val value = member(key) as? Long ?: throw mistyped(key, "an integer")
    if (value < Int.MIN_VALUE || value > Int.MAX_VALUE) throw mistyped(key, "a 32-bit integer")
    return value.toInt()
  }

  /** The array of integers [key]. */
  fun ints(key: String): List<Int> {
    val value = member(key) as? List<*> ?: throw mistyped(key, "an array")
    return value.mapIndexed { i, element ->
      (element as? Long)?.toInt()
        ?: throw JsonException("$path.$key[$i]: expected an integer, found ${describe(element)}")
    }
  }

  /** The array of strings [key]. */
  fun strings(key: String): List<String> {
    val value = member(key) as? List<*> ?: throw mistyped(key, "an array")
    return value.mapIndexed { i, element ->
      element as? String ?: throw JsonException("$path.$key[$i]: expected a string, found ${describe(element)}")
    }
  }

  private fun describe(value: Any?): String = when (value) {
    null -> "null"
    is String -> "a string"
    is Long, is Double -> "a number"
    is Boolean -> "a boolean"
    is List<*> -> "an array"
    else -> "an object"
  }
}

/**
 * A small, strict JSON parser (RFC 8259) with no dependencies, so the manifest parser runs on
 * Android and on a plain JVM alike.
 *
 * Objects become `Map<String, Any?>` (document order), arrays `List<Any?>`, integers `Long`,
 * other numbers `Double`, and `true`/`false`/`null` their Kotlin values.
 */
object Json {

  /**
   * Parses a JSON document whose top level is an object.
   *
   * @param text The document.
   * @param name Names the document in error messages.
   * @throws JsonException The text is not valid JSON or its top level is not an object.
   */
  fun parseObject(text: String, name: String): JsonObject {
    val value = Parser(text, name).document()
    @Suppress("UNCHECKED_CAST")
    return if (value is Map<*, *>) JsonObject(name, value as Map<String, Any?>)
    else throw JsonException("$name: the top level is not an object")
  }

  private class Parser(private val text: String, private val name: String) {
    private var at = 0

    fun document(): Any? {
      val value = value()
      skipWhitespace()
      if (at != text.length) fail("unexpected text after the document")
      return value
    }

    private fun fail(message: String): Nothing = throw JsonException("$name: $message at offset $at")

    private fun skipWhitespace() {
      while (at < text.length && (text[at] == ' ' || text[at] == '\n' || text[at] == '\r' ||
          text[at] == '\t')) {
        at++
      }
    }

    private fun expect(char: Char) {
      skipWhitespace()
      if (at >= text.length || text[at] != char) fail("expected '$char'")
      at++
    }

    private fun value(): Any? {
      skipWhitespace()
      if (at >= text.length) fail("unexpected end of text")
      return when (text[at]) {
        '{' -> objectValue()
        '[' -> arrayValue()
        '"' -> stringValue()
        't' -> literal("true", true)
        'f' -> literal("false", false)
        'n' -> literal("null", null)
        else -> number()
      }
    }

    private fun literal(word: String, value: Any?): Any? {
      if (!text.startsWith(word, at)) fail("invalid literal")
      at += word.length
      return value
    }

    private fun objectValue(): Map<String, Any?> {
      val members = LinkedHashMap<String, Any?>()
      expect('{')
      skipWhitespace()
      if (at < text.length && text[at] == '}') {
        at++
        return members
      }
      while (true) {
        skipWhitespace()
        if (at >= text.length || text[at] != '"') fail("expected a member name")
        val key = stringValue()
        if (members.containsKey(key)) fail("duplicate member \"$key\"")
        expect(':')
        members[key] = value()
        skipWhitespace()
        if (at < text.length && text[at] == ',') {
          at++
          continue
        }
        expect('}')
        return members
      }
    }

    private fun arrayValue(): List<Any?> {
      val elements = ArrayList<Any?>()
      expect('[')
      skipWhitespace()
      if (at < text.length && text[at] == ']') {
        at++
        return elements
      }
      while (true) {
        elements.add(value())
        skipWhitespace()
        if (at < text.length && text[at] == ',') {
          at++
          continue
        }
        expect(']')
        return elements
      }
    }

    private fun stringValue(): String {
      at++  // The opening quote.
      val out = StringBuilder()
      while (true) {
        if (at >= text.length) fail("unterminated string")
        val c = text[at++]
        when {
          c == '"' -> return out.toString()
          c == '\\' -> {
            if (at >= text.length) fail("unterminated escape")
            when (val e = text[at++]) {
              '"', '\\', '/' -> out.append(e)
              'b' -> out.append('\b')
              'f' -> out.append('\u000C')
              'n' -> out.append('\n')
              'r' -> out.append('\r')
              't' -> out.append('\t')
              'u' -> {
                if (at + 4 > text.length) fail("truncated \\u escape")
                val hex = text.substring(at, at + 4)
                if (!hex.all { it in '0'..'9' || it in 'a'..'f' || it in 'A'..'F' }) {
                  fail("invalid \\u escape")
                }
                out.append(Integer.parseInt(hex, 16).toChar())
                at += 4
              }
              else -> fail("invalid escape '\\$e'")
            }
          }
          c < ' ' -> fail("control character in string")
          else -> out.append(c)
        }
      }
    }

    private fun number(): Any {
      val start = at
      if (at < text.length && text[at] == '-') at++
      val digitsStart = at
      while (at < text.length && text[at] in '0'..'9') at++
      if (at == digitsStart) fail("invalid value")
      if (text[digitsStart] == '0' && at - digitsStart > 1) fail("leading zero in number")
      var integral = true
      if (at < text.length && text[at] == '.') {
        integral = false
        at++
        val fraction = at
        while (at < text.length && text[at] in '0'..'9') at++
        if (at == fraction) fail("digits expected after '.'")
      }
      if (at < text.length && (text[at] == 'e' || text[at] == 'E')) {
        integral = false
        at++
        if (at < text.length && (text[at] == '+' || text[at] == '-')) at++
        val exponent = at
        while (at < text.length && text[at] in '0'..'9') at++
        if (at == exponent) fail("digits expected in exponent")
      }
      val literal = text.substring(start, at)
      return if (integral) literal.toLongOrNull() ?: literal.toDouble() else literal.toDouble()
    }
  }
}
