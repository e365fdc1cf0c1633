package com.example.audiossl.core

import java.io.File
import java.io.FileOutputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.BufferUnderflowException
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import java.nio.file.Files
import java.nio.file.StandardCopyOption
import java.nio.file.StandardOpenOption
import java.security.MessageDigest

/** What a tensor file holds (its `kind` field). */
enum class TensorFileKind(val code: Int) {
  /** Every `get_weights` tensor, by variable name, in manifest order. */
  WEIGHTS(1),

  /** Current minus bundled model weights (variables with role `weight` only). */
  DELTA(2),

  /** One tensor `windows` of shape [count, example_samples]: the training buffer. */
  WINDOWS(3),

  /** Tagged clips, one [patch_samples] tensor each, named `label#n` (app only). */
  CLIPS(4)
}

/** A tensor file is unreadable, damaged, or does not fit the model (message: file and reason). */
class TensorFileException(source: String, reason: String) : IOException("$source: $reason")

/**
 * A named float32 tensor.
 *
 * @property name Variable name (weights, deltas), `windows`, or `label#n` (clips).
 * @property shape Dimensions (empty for a scalar).
 * @property data The values in row-major order.
 */
class NamedTensor(val name: String, val shape: IntArray, val data: FloatArray) {
  init {
    require(data.size == shape.fold(1) { product, d -> product * d }) {
      "tensor '$name': ${data.size} values do not fill shape ${shape.contentToString()}"
    }
  }
}

/**
 * The file format shared by the app and the toolkit's virtual device (`export/tensor_file.py`):
 * persisted weights, weight deltas, the window buffer and tagged clips.
 *
 * Layout, little-endian: magic `ODTF`; u32 format version (1); u32 kind ([TensorFileKind]);
 * 32 bytes raw sha256 of the `model.tflite` the tensors belong to; u64 training examples behind
 * the weights; u32 tensor count; per tensor: u16 name length, UTF-8 name, u8 rank, rank × u32
 * dimensions; then every tensor's float32 values in table order; then the sha256 of every byte
 * before it.
 *
 * @property kind What the tensors are.
 * @property modelSha256 Hex sha256 of the model file (the manifest's `file.sha256`).
 * @property examples Training examples seen since the bundled weights (0 for windows and clips).
 * @property tensors The tensors, names unique, in file order.
 */
class TensorFile(
  val kind: TensorFileKind,
  val modelSha256: String,
  val examples: Long,
  val tensors: List<NamedTensor>
) {
  /** The file's bytes, checksum included. */
  fun encode(): ByteArray {
    val names = tensors.map { it.name.toByteArray(Charsets.UTF_8) }
    var size = HEADER_BYTES
    for ((i, tensor) in tensors.withIndex()) {
      require(names[i].isNotEmpty() && names[i].size <= MAX_NAME_BYTES) {
        "tensor name '${tensor.name}' must be 1 to $MAX_NAME_BYTES UTF-8 bytes"
      }
      size += 2 + names[i].size + 1 + 4 * tensor.shape.size + 4 * tensor.data.size
    }
    val digest = MessageDigest.getInstance(DIGEST)
    val out = ByteBuffer.allocate(size + digest.digestLength).order(ByteOrder.LITTLE_ENDIAN)
    out.put(Contract.FORMAT_MAGIC.toByteArray(Charsets.US_ASCII))
    out.putInt(Contract.FORMAT_VERSION)
    out.putInt(kind.code)
    out.put(hexToBytes(modelSha256))
    out.putLong(examples)
    out.putInt(tensors.size)
    for ((i, tensor) in tensors.withIndex()) {
      out.putShort(names[i].size.toShort())
      out.put(names[i])
      out.put(tensor.shape.size.toByte())
      for (d in tensor.shape) out.putInt(d)
    }
    for (tensor in tensors) {
      for (value in tensor.data) out.putFloat(value)
    }
    val bytes = out.array()
    digest.update(bytes, 0, size)
    System.arraycopy(digest.digest(), 0, bytes, size, digest.digestLength)
    return bytes
  }

  /** Writes the file atomically (see [AtomicFiles.write]). */
  fun write(file: File) = AtomicFiles.write(file, encode())

  /** The tensor [name], or null. */
  fun tensor(name: String): NamedTensor? = tensors.firstOrNull { it.name == name }

  companion object {
    private const val DIGEST = "SHA-256"
    private const val MAX_NAME_BYTES = 0xFFFF
    private const val MAGIC_BYTES = 4
    private const val SHA256_BYTES = 32
    private const val HEADER_BYTES = MAGIC_BYTES + 4 + 4 + SHA256_BYTES + 8 + 4

    /**
     * Parses and checks a tensor file's bytes.
     *
     * @param bytes The content.
     * @param source Names the file in error messages.
     * @throws TensorFileException Wrong magic or version, checksum mismatch (damaged or
     *   truncated), unknown kind, malformed table, trailing bytes, duplicate names.
     */
    fun decode(bytes: ByteArray, source: String): TensorFile {
      val digest = MessageDigest.getInstance(DIGEST)
      if (bytes.size < HEADER_BYTES + digest.digestLength) {
        throw TensorFileException(source, "truncated: ${bytes.size} bytes is shorter than a header and checksum")
      }
      val magic = String(bytes, 0, MAGIC_BYTES, Charsets.ISO_8859_1)
      if (magic != Contract.FORMAT_MAGIC) {
        throw TensorFileException(source, "not a tensor file (starts with '$magic')")
      }
      val bodySize = bytes.size - digest.digestLength
      digest.update(bytes, 0, bodySize)
      if (!digest.digest().contentEquals(bytes.copyOfRange(bodySize, bytes.size))) {
        throw TensorFileException(source, "checksum mismatch: the file is damaged or truncated")
      }
      val input = ByteBuffer.wrap(bytes, MAGIC_BYTES, bodySize - MAGIC_BYTES).order(ByteOrder.LITTLE_ENDIAN)
      try {
        val version = input.getInt()
        if (version != Contract.FORMAT_VERSION) {
          throw TensorFileException(source, "format version $version, this reader knows ${Contract.FORMAT_VERSION}")
        }
        val code = input.getInt()
        val kind = TensorFileKind.values().firstOrNull { it.code == code }
          ?: throw TensorFileException(source, "unknown kind $code")
        val sha = ByteArray(SHA256_BYTES)
        input.get(sha)
        val examples = input.getLong()
        val count = input.getInt()
        if (count < 0) throw TensorFileException(source, "negative tensor count")
        val names = ArrayList<String>()
        val shapes = ArrayList<IntArray>()
        for (i in 0 until count) {
          val name = ByteArray(input.getShort().toInt() and 0xFFFF)
          input.get(name)
          names.add(String(name, Charsets.UTF_8))
          shapes.add(IntArray(input.get().toInt() and 0xFF) { input.getInt() })
        }
        val tensors = ArrayList<NamedTensor>()
        for (i in 0 until count) {
          var elements = 1L
          for (d in shapes[i]) {
            if (d < 0) throw TensorFileException(source, "tensor '${names[i]}' has a negative dimension")
            elements *= d
          }
          if (4 * elements > input.remaining()) {
            throw TensorFileException(source, "tensor '${names[i]}' runs past the end of the file")
          }
          val data = FloatArray(elements.toInt()) { input.getFloat() }
          tensors.add(NamedTensor(names[i], shapes[i], data))
        }
        if (input.remaining() != 0) {
          throw TensorFileException(source, "${input.remaining()} unexpected bytes after the tensor data")
        }
        if (names.toSet().size != names.size) throw TensorFileException(source, "duplicate tensor names")
        return TensorFile(kind, bytesToHex(sha), examples, tensors)
      } catch (e: BufferUnderflowException) {
        throw TensorFileException(source, "malformed tensor table")
      }
    }

    /** Reads and checks [file]; throws [TensorFileException] if missing, unreadable or damaged. */
    fun read(file: File): TensorFile {
      val bytes = try {
        file.readBytes()
      } catch (e: IOException) {
        throw TensorFileException(file.path, "unreadable: ${e.message}")
      }
      return decode(bytes, file.path)
    }

    /** Lower-case hex of [bytes]. */
    fun bytesToHex(bytes: ByteArray): String = buildString {
      for (b in bytes) append(String.format("%02x", b.toInt() and 0xFF))
    }

    private fun hexToBytes(hex: String): ByteArray {
      require(hex.length == 2 * SHA256_BYTES) { "model sha256 '$hex' is not $SHA256_BYTES bytes of hex" }
      return ByteArray(SHA256_BYTES) { Integer.parseInt(hex.substring(2 * it, 2 * it + 2), 16).toByte() }
    }
  }
}

/** Durable replacement of files. */
object AtomicFiles {
  /**
   * Replaces [target] with [bytes]: writes `<target>.tmp`, fsyncs it, calls [beforeRename]
   * (the weight store rotates the previous copy there), renames it over [target] atomically and
   * fsyncs the directory where the platform allows it. A crash at any point leaves either the
   * old or the new file in place, never a partial one.
   */
  fun write(target: File, bytes: ByteArray, beforeRename: () -> Unit = {}) {
    val directory = target.absoluteFile.parentFile
    directory.mkdirs()
    val temporary = File(directory, target.name + ".tmp")
    FileOutputStream(temporary).use { stream ->
      stream.write(bytes)
      stream.fd.sync()
    }
    beforeRename()
    Files.move(temporary.toPath(), target.toPath(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING)
    syncDirectory(directory)
  }

  /** Renames [source] over [target] atomically. */
  fun move(source: File, target: File) {
    Files.move(source.toPath(), target.toPath(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING)
  }

  private fun syncDirectory(directory: File) {
    try {
      FileChannel.open(directory.toPath(), StandardOpenOption.READ).use { it.force(true) }
    } catch (e: IOException) {
      // Some file systems cannot open a directory; the rename itself is still atomic.
    }
  }
}
