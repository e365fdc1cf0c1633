package com.example.audiossl.core

import java.io.File

/**
 * What [WeightStore.restore] assigned.
 *
 * @property source [CURRENT], [PREVIOUS] (the last good copy) or [BUNDLED] (nothing usable was
 *   saved: the model keeps the weights inside its `.tflite` file).
 * @property examples Training examples behind the restored weights.
 * @property problems Why each skipped file was unusable.
 */
class Restored(val source: String, val examples: Long, val problems: List<String>) {
  companion object {
    const val CURRENT = "current"
    const val PREVIOUS = "previous"
    const val BUNDLED = "bundled"
  }
}

/**
 * The saved weights of one model in [directory]: the current file plus the last good copy.
 *
 * [save] makes the new file durable before anything is renamed and keeps the file it replaces
 * as the previous copy only if that one passes its checks, so once anything was saved one of
 * the two files always holds good weights. [restore] never throws for a bad file: it falls back
 * to the previous copy, then to the bundled weights, and reports why.
 *
 * @property directory Where the files live.
 * @property manifest The model the weights belong to.
 */
class WeightStore(val directory: File, val manifest: Manifest) {
  /** The newest saved weights. */
  val currentFile = File(directory, Contract.STATE_WEIGHTS)

  /** The last good copy. */
  val previousFile = File(directory, Contract.STATE_PREVIOUS_WEIGHTS)

  /**
   * Reads [file] and checks it holds finite weights of this model.
   *
   * @throws TensorFileException Damaged, another model's or kind, tensors that do not match the
   *   manifest's variables, non-finite values.
   */
  fun check(file: File): TensorFile {
    val content = TensorFile.read(file)
    if (content.kind != TensorFileKind.WEIGHTS) {
      throw TensorFileException(file.path, "holds ${content.kind}, not weights")
    }
    if (content.modelSha256 != manifest.modelSha256) {
      throw TensorFileException(file.path, "belongs to another model (${content.modelSha256.take(16)}...)")
    }
    val variables = manifest.variables
    val matches = content.tensors.size == variables.size && content.tensors.zip(variables).all { (t, v) ->
      t.name == v.name && t.shape.toList() == v.shape
    }
    if (!matches) {
      throw TensorFileException(file.path, "tensors do not match the manifest's ${variables.size} variables")
    }
    val bad = content.tensors.firstOrNull { t -> !t.data.all { it.isFinite() } }
    if (bad != null) throw TensorFileException(file.path, "non-finite values in '${bad.name}'")
    return content
  }

  /**
   * Writes [weights] durably; the replaced file becomes the last good copy if it is good.
   *
   * @param weights Every variable by name, as [OnDeviceModel.getWeights] returns them.
   * @param examples Training examples behind them.
   */
  fun save(weights: Map<String, FloatArray>, examples: Long) {
    val tensors = manifest.variables.map { v ->
      NamedTensor(v.name, v.shape.toIntArray(), weights[v.name] ?: throw IllegalArgumentException("missing '${v.name}'"))
    }
    AtomicFiles.write(currentFile, TensorFile(TensorFileKind.WEIGHTS, manifest.modelSha256, examples, tensors).encode()) {
      val good = try {
        check(currentFile)
        true
      } catch (e: TensorFileException) {
        false  // Missing or damaged: the previous good copy stays.
      }
      if (good) AtomicFiles.move(currentFile, previousFile)
    }
  }

  /**
   * Assigns the newest usable saved weights with [assign] (usually [OnDeviceModel.setWeights]).
   *
   * Tries the current file, then the last good copy; a file that fails its checks or that
   * [assign] rejects (any [RuntimeException]) is skipped and its reason recorded.
   */
  fun restore(assign: (Map<String, FloatArray>) -> Unit): Restored {
    val problems = ArrayList<String>()
    for ((source, file) in listOf(Restored.CURRENT to currentFile, Restored.PREVIOUS to previousFile)) {
      if (!file.exists()) continue
      try {
        val content = check(file)
        assign(content.tensors.associate { it.name to it.data })
        return Restored(source, content.examples, problems)
      } catch (e: TensorFileException) {
        problems.add("$source weights skipped: ${e.message}")
      } catch (e: RuntimeException) {
        problems.add("$source weights skipped: ${e.message}")
      }
    }
    return Restored(Restored.BUNDLED, 0, problems)
  }
}
