package com.example.audiossl.core

import java.io.File
import kotlin.math.sqrt

/**
 * A clip the user tagged: the `patch_samples` samples heard when they pressed "tag".
 *
 * The audio is kept rather than its embedding, so matches stay right after the weights change.
 *
 * @property label The user's label.
 * @property waveform The samples.
 */
class TaggedClip(val label: String, val waveform: FloatArray)

/**
 * A tagged clip ranked against a query embedding.
 *
 * @property label The clip's label.
 * @property similarity Cosine similarity in [-1, 1].
 */
class Match(val label: String, val similarity: Float)

/**
 * The user's tagged clips for the few-shot keyword demo, persisted as a clips tensor file.
 * Thread-safe.
 *
 * @property file Where the clips are saved.
 * @property manifest The model (clips are `patch_samples` long and bound to its file).
 */
class ClipLibrary(val file: File, val manifest: Manifest) {
  private val clips = ArrayList<TaggedClip>()

  /** A message if the saved clips could not be read (they are then dropped), else null. */
  val loadProblem: String?

  init {
    var problem: String? = null
    if (file.exists()) {
      try {
        val content = TensorFile.read(file)
        if (content.kind != TensorFileKind.CLIPS || content.tensors.any { it.data.size != manifest.patchSamples }) {
          throw TensorFileException(file.path, "not clips of ${manifest.patchSamples} samples")
        }
        for (tensor in content.tensors) clips.add(TaggedClip(tensor.name.substringBeforeLast(SEPARATOR), tensor.data))
      } catch (e: TensorFileException) {
        problem = "saved clips ignored: ${e.message}"
      }
    }
    loadProblem = problem
  }

  /** The clips, oldest first. */
  val all: List<TaggedClip>
    @Synchronized get() = ArrayList(clips)

  /** Adds a clip and saves the library atomically. */
  @Synchronized
  fun add(label: String, waveform: FloatArray) {
    require(label.isNotBlank()) { "a clip needs a label" }
    require(waveform.size == manifest.patchSamples) {
      "a clip has ${manifest.patchSamples} samples, got ${waveform.size}"
    }
    clips.add(TaggedClip(label.trim(), waveform.copyOf()))
    val tensors = clips.mapIndexed { i, clip ->
      NamedTensor("${clip.label}$SEPARATOR$i", intArrayOf(clip.waveform.size), clip.waveform)
    }
    TensorFile(TensorFileKind.CLIPS, manifest.modelSha256, 0, tensors).write(file)
  }

  companion object {
    private const val SEPARATOR = "#"

    /** Cosine similarity of two equally long vectors (0 if either is all zeros). */
    fun cosine(a: FloatArray, b: FloatArray): Float {
      require(a.size == b.size) { "vectors of ${a.size} and ${b.size} values" }
      var dot = 0.0
      var na = 0.0
      var nb = 0.0
      for (i in a.indices) {
        dot += a[i].toDouble() * b[i]
        na += a[i].toDouble() * a[i]
        nb += b[i].toDouble() * b[i]
      }
      return if (na == 0.0 || nb == 0.0) 0f else (dot / sqrt(na * nb)).toFloat()
    }

    /**
     * The [count] references most similar to [query], best first.
     *
     * @param references `(label, embedding)` pairs.
     */
    fun nearest(query: FloatArray, references: List<Pair<String, FloatArray>>, count: Int): List<Match> =
      references.map { Match(it.first, cosine(query, it.second)) }
        .sortedByDescending { it.similarity }
        .take(count)
  }
}
