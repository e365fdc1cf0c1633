package com.example.audiossl.core

import org.junit.After
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.Test
import java.io.File
import java.nio.file.Files

class StorageTest {
  private lateinit var dir: File
  private val manifest = Manifest.parse(fakeManifestJson())

  @Before
  fun setUp() {
    dir = Files.createTempDirectory("storage-test").toFile()
  }

  @After
  fun tearDown() {
    dir.deleteRecursively()
  }

  private fun fixture(): ByteArray =
    StorageTest::class.java.getResourceAsStream("/fixture.odtf")!!.use { it.readBytes() }

  private fun decodeFails(bytes: ByteArray): String {
    try {
      TensorFile.decode(bytes, "f")
    } catch (e: TensorFileException) {
      return e.message!!
    }
    fail("decoded a damaged file")
    throw AssertionError()
  }

  private fun weights(scale: Float) = linkedMapOf(
    "encoder/w" to FloatArray(6) { it * scale },
    "head/b" to FloatArray(3) { -scale },
    "optimizer/step" to floatArrayOf(scale)
  )

  @Test
  fun readsAndWritesTheVirtualDevicesBytes() {
    // fixture.odtf was written by export/tensor_file.py; tests/test_virtual_device.py checks it still is.
    val bytes = fixture()
    val file = TensorFile.decode(bytes, "fixture")
    assertEquals(TensorFileKind.WEIGHTS, file.kind)
    assertEquals("c7a3a8c7435ef8e4cf1ca2d261f7e09ca85de6cdb70f7c689a836680523a180c", file.modelSha256)
    assertEquals(6L, file.examples)
    assertEquals(listOf("encoder/w", "optimizer/step"), file.tensors.map { it.name })
    assertArrayEquals(intArrayOf(2, 3), file.tensors[0].shape)
    assertArrayEquals(floatArrayOf(-1f, -0.5f, 0f, 0.5f, 1f, 1.5f), file.tensors[0].data, 0f)
    assertArrayEquals(intArrayOf(), file.tensors[1].shape)
    assertArrayEquals(floatArrayOf(3f), file.tensors[1].data, 0f)
    assertArrayEquals(bytes, file.encode())
  }

  @Test
  fun detectsDamage() {
    val bytes = fixture()
    val flipped = bytes.copyOf().also { it[70] = (it[70].toInt() xor 0x10).toByte() }
    assertTrue(decodeFails(flipped).contains("checksum mismatch"))
    assertTrue(decodeFails(bytes.copyOf(bytes.size - 9)).contains("checksum mismatch"))
    assertTrue(decodeFails(bytes.copyOf(20)).contains("truncated"))
    assertTrue(decodeFails(ByteArray(bytes.size)).contains("not a tensor file"))
  }

  @Test
  fun restoresTheNewestGoodWeights() {
    val store = WeightStore(dir, manifest)
    assertEquals(Restored.BUNDLED, store.restore { fail("nothing saved") }.source)
    store.save(weights(1f), 2)
    store.save(weights(2f), 4)
    assertTrue(store.previousFile.exists())
    var assigned: Map<String, FloatArray> = emptyMap()
    val restored = store.restore { assigned = it }
    assertEquals(Restored.CURRENT, restored.source)
    assertEquals(4L, restored.examples)
    assertTrue(restored.problems.isEmpty())
    assertArrayEquals(weights(2f).getValue("encoder/w"), assigned.getValue("encoder/w"), 0f)
  }

  @Test
  fun fallsBackToThePreviousCopyThenToTheBundledWeights() {
    val store = WeightStore(dir, manifest)
    store.save(weights(1f), 2)
    store.save(weights(2f), 4)
    val bytes = store.currentFile.readBytes()
    store.currentFile.writeBytes(bytes.copyOf(bytes.size / 2))  // Truncated.
    var assigned: Map<String, FloatArray> = emptyMap()
    val previous = store.restore { assigned = it }
    assertEquals(Restored.PREVIOUS, previous.source)
    assertEquals(2L, previous.examples)
    assertEquals(1, previous.problems.size)
    assertArrayEquals(weights(1f).getValue("head/b"), assigned.getValue("head/b"), 0f)

    val good = store.previousFile.readBytes()
    store.previousFile.writeBytes(good.copyOf().also { it[60] = (it[60].toInt() xor 1).toByte() })  // Flipped.
    val bundled = store.restore { fail("no good file left") }
    assertEquals(Restored.BUNDLED, bundled.source)
    assertEquals(2, bundled.problems.size)
  }

  @Test
  fun skipsWeightsTheModelRejects() {
    val store = WeightStore(dir, manifest)
    store.save(weights(1f), 2)
    store.save(weights(2f), 4)
    val restored = store.restore { if (it.getValue("optimizer/step")[0] == 2f) throw WeightsRejectedException("no") }
    assertEquals(Restored.PREVIOUS, restored.source)
  }

  @Test
  fun aDamagedCurrentFileNeverReplacesTheGoodCopy() {
    val store = WeightStore(dir, manifest)
    store.save(weights(1f), 2)
    store.save(weights(2f), 4)
    store.currentFile.writeBytes(ByteArray(7))
    store.save(weights(3f), 6)
    assertEquals(2L, store.check(store.previousFile).examples)
    assertEquals(6L, store.check(store.currentFile).examples)
    assertFalse(File(dir, Contract.STATE_WEIGHTS + ".tmp").exists())
  }

  @Test
  fun rejectsAnotherModelsWeights() {
    val other = Manifest.parse(fakeManifestJson().replace(FakeSizes.SHA, "f".repeat(64)))
    WeightStore(dir, other).save(weights(1f), 2)
    val restored = WeightStore(dir, manifest).restore { fail("another model's weights") }
    assertEquals(Restored.BUNDLED, restored.source)
    assertTrue(restored.problems[0].contains("another model"))
  }
}
